"""fusion-cds: a CDS Hooks 2.0 order-sign service. The sub-packages are the parts of docs/architecture.md:

web -> pipeline -> engine, with hooks, packs, spine and auth below; audit and ops beside the web edge;
cli on top; sandbox (the EHR side) imported by the service only when the try-it page is on.
"""
