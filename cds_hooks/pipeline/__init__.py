"""The order-sign stages in call order: orders -> patient data -> profile -> criteria (CQL) -> cards.

evaluation.py is the only module that calls the stages in order; no module here imports Flask.
"""
