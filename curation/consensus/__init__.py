"""Crowd-consensus algorithms (fit/fit_predict, labels_/probas_/skills_) and the decision loop."""
