"""A model's life: training, lean conversion, publishing a version, the retrain pipeline's steps and
the deploy check. Imports every lower package; nothing imports it but handlers and tooling.
"""
