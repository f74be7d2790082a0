"""Where flowaug meets other libraries: torchvision, torch data, imbalanced-learn, Hugging Face datasets."""
