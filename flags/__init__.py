"""absl flag definitions of the command-line entry points, mirroring the original scripts.

Each `define_*` function takes the `FlagValues` to define into (the global `absl.flags.FLAGS`
by default), so tests can define a fresh set and parse arguments without a subprocess.
"""
