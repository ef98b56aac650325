"""Reflection: a background worker that reads threads gone quiet and writes what they teach
into memory (notes, and sparingly the core blocks), under the same rules as a turn."""

from app.reflection.worker import Outsiders, Reflection, ReflectionLimits

__all__ = ["Outsiders", "Reflection", "ReflectionLimits"]
