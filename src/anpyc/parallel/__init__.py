"""Several processes: collectives and data sharding (:mod:`anpyc.parallel.collectives`, low
level: the loop, kernels and methods use it) and starting process groups
(:mod:`anpyc.parallel.launch`). Joining a group and the loop's task-boundary synchronisation
are callbacks (:mod:`anpyc.callbacks.distributed`)."""
