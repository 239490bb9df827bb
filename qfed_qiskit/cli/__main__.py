"""``python -m qfed_qiskit.cli``: the same as the ``qfed-qiskit`` console script."""

from qfed_qiskit.cli.main import main

main()
