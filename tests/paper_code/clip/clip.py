"""The paper's clip/clip.py: only the function its preprocessing pipelines pickle a reference to."""


def _convert_image_to_rgb(image):
    return image.convert("RGB")
