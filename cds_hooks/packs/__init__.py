"""Rule packs (cql/<pack>/pack.json with its ELM and value sets): loading and checking them."""
