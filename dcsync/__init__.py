"""dcsync: a git-like versioned store for detector calibration constants."""
