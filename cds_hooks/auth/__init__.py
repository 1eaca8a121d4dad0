"""Who may call and where requests may go: the caller's JWT, key sets, the replay store seam, outbound rules."""
