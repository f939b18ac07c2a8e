"""Quality you can measure (issue 21): the learned reordering task's models, the simul path
over an oracle transcript, and ``streamst bench quality``."""
