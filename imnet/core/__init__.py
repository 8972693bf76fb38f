"""The ground floor every stage stands on: settings, the per-command App, blob store, WordNet, console."""
