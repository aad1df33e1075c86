"""mta.cli - the mta command and its subcommands, one module each."""
