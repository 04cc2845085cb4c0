"""What a conversion writes beside the asset: `<name>.info.json` and `<name>.result.json`, in ARR's shapes.

result.json is a JSON array: `{"conversionId": ...}`, then the warnings, at most one error, then exactly one
`{"result": "succeeded" | "succeeded with warnings" | "failed"}`. info.json has ARR's sections: files,
conversionSettings, inputInfo, inputStatistics, outputInfo, outputStatistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# ARR's own warning code; the other codes are openrr's and are words, so they cannot collide with ARR's numbers
MISSING_TEXTURE = ("4004", "Missing texture")
MISSING_FILE = ("MissingReferencedFile", "Missing referenced file")
SETTING_IGNORED = ("SettingIgnored", "Setting not applied")


@dataclass(frozen=True)
class ConversionWarning:
    code: str
    title: str
    message: str
    """One precise sentence: what is wrong, where, and what the conversion did about it."""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: tuple[str, str], message: str, **details: Any) -> ConversionWarning:
        return cls(kind[0], kind[1], message, details)

    def entry(self) -> dict[str, Any]:
        return {"warning": self.code, "title": self.title, "details": {"message": self.message, **self.details}}


@dataclass(frozen=True)
class InputInfo:
    extension: str
    """With the dot, lower case: ".glb"."""
    format: str
    version: str = ""
    generator: str = ""

    def section(self) -> dict[str, str]:
        return {
            "sourceAssetExtension": self.extension,
            "sourceAssetFormat": self.format,
            "sourceAssetFormatVersion": self.version,
            "sourceAssetGenerator": self.generator,
        }


@dataclass(frozen=True)
class InputStatistics:
    meshes: int
    faces: int
    vertices: int
    materials: int
    faces_smallest_mesh: int
    faces_biggest_mesh: int
    nodes: int
    mesh_usages: int
    max_node_depth: int
    points: int = 0
    """openrr's addition: points of point clouds, which ARR's face and vertex counts do not describe."""

    def section(self) -> dict[str, int]:
        return {
            "numMeshes": self.meshes,
            "numFaces": self.faces,
            "numVertices": self.vertices,
            "numMaterial": self.materials,
            "numFacesSmallestMesh": self.faces_smallest_mesh,
            "numFacesBiggestMesh": self.faces_biggest_mesh,
            "numNodes": self.nodes,
            "numMeshUsagesInScene": self.mesh_usages,
            "maxNodeDepth": self.max_node_depth,
            "numPoints": self.points,
        }


@dataclass(frozen=True)
class OutputStatistics:
    mesh_parts: int
    recentering_offset: tuple[float, float, float]
    bounds_min: tuple[float, float, float]
    bounds_max: tuple[float, float, float]
    triangles: int
    points: int
    vertices: int
    asset_bytes: int

    def section(self) -> dict[str, Any]:
        return {
            "numMeshPartsCreated": self.mesh_parts,
            "numMeshPartsInstanced": 0,  # placed copies are flattened into the merged meshes
            "recenteringOffset": list(self.recentering_offset),
            "boundingBox": {"min": list(self.bounds_min), "max": list(self.bounds_max)},
            "numTriangles": self.triangles,
            "numPoints": self.points,
            "numVertices": self.vertices,
            "assetSizeBytes": self.asset_bytes,
        }


def info_document(
    input_file: str,
    output_file: str,
    settings: dict[str, Any],
    info: InputInfo,
    statistics: InputStatistics,
    output: OutputStatistics,
    tool_version: str,
    conversion_hash: str,
) -> bytes:
    document = {
        "files": {"input": input_file, "output": output_file},
        "conversionSettings": settings,
        "inputInfo": info.section(),
        "inputStatistics": statistics.section(),
        "outputInfo": {"conversionToolVersion": tool_version, "conversionHash": conversion_hash},
        "outputStatistics": output.section(),
    }
    return json.dumps(document, indent=2).encode() + b"\n"


def result_document(
    conversion_id: str,
    warnings: list[ConversionWarning],
    error: tuple[str, str, str] | None = None,
) -> bytes:
    """`error` is (code, title, message); with it the result is "failed"."""
    entries: list[dict[str, Any]] = [{"conversionId": conversion_id}]
    entries.extend(w.entry() for w in warnings)
    if error is not None:
        code, title, message = error
        entries.append({"error": code, "title": title, "details": {"message": message}})
        result = "failed"
    else:
        result = "succeeded with warnings" if warnings else "succeeded"
    entries.append({"result": result})
    return json.dumps(entries, indent=2).encode() + b"\n"
