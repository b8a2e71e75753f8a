"""The node-side controllers: the claims-mode agent and simple mode.

Each reads the API through kube/, holds addresses through net/, and applies
decisions that live in core/ (pure). Programs compose them.
"""
