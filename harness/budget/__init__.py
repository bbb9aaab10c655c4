"""Parameters and MACs from several counters, reconciled operator by operator, with the challenge's verdicts (``harness budget``)."""
