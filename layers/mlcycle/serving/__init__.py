"""Serving: what the prediction endpoint runs. Imports neither pandas nor scikit-learn, so the
endpoint's package stays small (onnxruntime, numpy, Powertools)."""
