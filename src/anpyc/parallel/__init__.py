"""Several processes: collectives and data sharding (:mod:`anpyc.parallel.collectives`) and
starting process groups (:mod:`anpyc.parallel.launch`)."""
