"""Running the service: logs, metrics, the doctor checks, the production server's settings."""
