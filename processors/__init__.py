"""The Faust app and its agents, one module per stage."""
