"""`imnet demo`: the whole pipeline on a loopback fixture web, top floor beside the CLI."""
