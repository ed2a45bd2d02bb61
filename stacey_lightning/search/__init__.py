"""What a trial samples: the distributions of a search space (``distributions``), Stacey's spaces and
presets (``space``), a baseline optimizer's (``baseline_space``), the points a study trains first
(``anchors``), samplers and pruners by name (``samplers``) and the gradient scale that turns a sampled
coordinate step into a learning rate (``calibration``). Nothing here runs a study.
"""
