"""CDS Hooks 2.0 wire formats (hook request, feedback, prefetch templates); no Flask."""
