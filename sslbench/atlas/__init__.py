"""``sslbench atlas``: the collapse atlas of one or more sweeps' output directories.

The modules, in the order the data flows:

- :mod:`~sslbench.atlas.runs`: every sweep run read into a typed :class:`~sslbench.atlas.runs.AtlasRun`;
- :mod:`~sslbench.atlas.cells`: per cell (a sweep's point, pooled over seeds): metric means and
  intervals, P(complete / dimensional collapse) with Clopper-Pearson intervals, monitor onset and settle;
- :mod:`~sslbench.atlas.slices`: 1-D slices, their monotonicity and collapse boundary;
- :mod:`~sslbench.atlas.interaction`: pooled family grids, effects under several recipes, knob x scale;
- :mod:`~sslbench.atlas.agreement`: label-free readings against accuracy (Kendall tau, bootstrap);
- :mod:`~sslbench.atlas.early`: the early-call rules replayed on the monitor series;
- :mod:`~sslbench.atlas.build`: all of it into one :class:`~sslbench.atlas.build.Atlas`;
- :mod:`~sslbench.atlas.render`, :mod:`~sslbench.atlas.figures`, :mod:`~sslbench.atlas.write`: md, json, PNGs.

The method (definitions, intervals, verdict rules) is written up in ``docs/atlas/README.md``.
"""
