"""The rules of one study: what it is (``spec``: ``StudySpec``, every setting checked once), what it
may spend (``budget``: epochs; ``places``: trials), which trial may start (``admission``: one pure
function the workers call) and which configuration wins (``confirm``: the top candidates on other
seeds). Pure rules over a study's trials: nothing here trains a model or starts a process.
"""
