"""The training engine. Imports torch, torchvision, timm and Pillow, never Textual or Rich."""
