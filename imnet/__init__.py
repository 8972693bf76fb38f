"""imnet: rebuild the ImageNet construction pipeline end to end and train on what it builds."""

__version__ = "0.1.0"
