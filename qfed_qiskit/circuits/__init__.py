"""Pure builders for the Quantum-Train circuits and their sizes."""

from qfed_qiskit.circuits.ansatz import qt_ansatz
from qfed_qiskit.circuits.sizing import QTSizing, qt_sizing

__all__ = ["QTSizing", "qt_ansatz", "qt_sizing"]
