"""The audit trail and its database: schema, migrations, sealing, call records, the go-live switch, the usage report."""
