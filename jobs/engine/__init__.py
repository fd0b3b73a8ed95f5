"""The training engine: every job trains as a member of a stack (train, stack, member, and the
stacked model, optimiser and schedule)."""
