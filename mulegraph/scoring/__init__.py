"""Scoring: rank the accounts of a window and say why, with labels (supervised) or without.

The modules, lowest first:

* :mod:`~mulegraph.scoring.signals` -- what the scorers share: candidate reasons, percentiles,
  the unfitted error;
* :mod:`~mulegraph.scoring.nolabel` -- the no-label mode: documented typology rules;
* :mod:`~mulegraph.scoring.training`, :mod:`~mulegraph.scoring.estimator`,
  :mod:`~mulegraph.scoring.persist` -- the supervised model (entry point :mod:`~mulegraph.scoring.model`);
* :mod:`~mulegraph.scoring.evidence`, :mod:`~mulegraph.scoring.explain` -- reason codes and the
  transfers behind them;
* :mod:`~mulegraph.scoring.score` -- :func:`~mulegraph.scoring.score.score` and
  :func:`~mulegraph.scoring.score.score_features`: features -> ranked scores with reasons;
* :mod:`~mulegraph.scoring.evaluate` -- detection quality against labels.

This package's ``__init__`` re-exports nothing: the names ``score``, ``explain`` and ``evaluate``
are its modules. Import from the modules (``from mulegraph.scoring.score import score``) or from
the top-level facade (``from mulegraph import score, train, load_model``).
"""
