"""Development tooling: the `sklambda` CLI and the embedded local stack. Never shipped in a layer."""
