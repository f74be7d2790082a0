"""Where flowaug meets other libraries: torchvision, torch data, imbalanced-learn and Hugging Face
datasets."""
