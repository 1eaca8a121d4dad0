"""The EHR side, for trying the service: fixtures, draft orders, a CDS client, the try-it page.

The service imports this package only when the try-it page is on (tests/test_architecture.py checks it).
"""
