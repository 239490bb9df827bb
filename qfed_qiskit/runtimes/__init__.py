"""Federated runtimes: the embedded engine (:mod:`qfed_qiskit.federated.embedded`) and Flower.

Nothing is imported here: :mod:`qfed_qiskit.runtimes.flower` needs the optional ``flwr`` package
and is loaded only by the code that runs Flower (``runtime = "flower"``, ``flwr run``).
"""
