"""rdcl: relation-driven collaborative learning for COVID-19 CT lung infection segmentation.

Zhang et al., "Exploiting Shared Knowledge from Non-COVID Lesions for Annotation-Efficient COVID-19
CT Lung Infection Segmentation", IEEE JBHI 2021 (arXiv:2012.15564).
"""

from rdcl._version import __version__ as __version__
