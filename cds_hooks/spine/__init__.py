"""The spine procedure extension a rule pack opts into: interspace levels, radiology report text, derived findings.

All spinal anatomy in the service lives here (tests/test_architecture.py checks it).
"""
