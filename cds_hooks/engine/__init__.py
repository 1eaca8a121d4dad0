"""The CQL bridge: a pool of Node workers (js/) evaluating the packs' ELM, and what each library retrieves."""
