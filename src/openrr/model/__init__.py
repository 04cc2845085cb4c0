"""Models as numpy arrays, shared by the render server and the converter: mesh and model types, import through
trimesh, the .arrAsset reader and writer, and the ray-cast chunk structure. Imports nothing of openrr but util."""
