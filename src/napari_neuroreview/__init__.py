"""napari-neuroreview: review brain MRI with deep models at your side, in napari."""

__version__ = "0.1.0"
