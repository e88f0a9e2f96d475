"""bamkd: BAM! Born-Again Multi-Task Networks for BERT-like encoders.

Single-task teachers are distilled into one multi-task student whose targets move from the
teachers' outputs to the gold labels over training (teacher annealing), as in Clark et al., 2019.
"""

__version__ = "0.1.0"
