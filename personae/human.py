"""The one speaker who is not a persona. Kept at the bottom of the house so that the store (which
filters the person's lines out of counts) and the config (which refuses the name for a persona)
share it without one importing the other."""

HUMAN = "User"  # the author of scripted inputs and --interactive lines; no persona may take it
