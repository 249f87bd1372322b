"""Read a TF1 SavedModel / TF Hub module without TensorFlow: checkpoint variables and graph
constants.

A TF Hub (TF1 format) module directory holds `saved_model.pb` (a SavedModel protobuf: MetaGraphDefs,
each with a GraphDef) and `variables/variables.index` + `variables/variables.data-NNNNN-of-MMMMM` (a
tensor bundle). The formats, from TensorFlow's sources (core/util/tensor_bundle,
core/lib/io/table_format, core/protobuf/saved_model.proto, meta_graph.proto):

- `variables.index` is a LevelDB-format table, written uncompressed: a 48-byte footer (metaindex and index
  block handles, magic 0xdb4775248b80fb57) points at an index block whose entries point at data blocks;
  each block is a run of prefix-compressed (key, value) entries followed by a restart array. Keys are
  tensor names; each value is a BundleEntryProto (dtype 1, shape 2, shard_id 3, offset 4, size 5), the
  empty key holds the BundleHeaderProto (num_shards 1, endianness 2).
- the data shards are the tensors' raw little-endian bytes at those offsets.
- graph constants are `Const` nodes (attr `value`, a TensorProto); `Pack` of constants is folded too.

The two outer SavedModel messages are walked with a small protobuf wire-format reader; the GraphDef
and TensorProto messages are parsed with tensorboardX's compiled protos (already a dependency).
"""

from __future__ import annotations

import os
import struct

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48

# tensorflow/core/framework/types.proto → numpy (the numeric types a generator module holds).
DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
}


class FormatError(ValueError):
    """The file is not the TensorFlow format this reader expects."""


# ------------------------------------------------------------------------------- protobuf wire format


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def proto_fields(buf: bytes) -> list[tuple[int, object]]:
    """[(field number, value)] of a serialised protobuf message: varints as int, length-delimited
    fields as bytes, fixed32/64 as int (the caller knows which fields are sub-messages)."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos : pos + length]), pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise FormatError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _field(fields, number, default=None):
    return next((v for n, v in fields if n == number), default)


# ------------------------------------------------------------------------------------ tensor bundle


def _block_entries(data: bytes, offset: int, size: int):
    """(key, value) pairs of one table block at `offset` (its `size` excludes the 5-byte
    trailer)."""
    block = data[offset : offset + size]
    compression = data[offset + size] if offset + size < len(data) else None
    if compression != 0:
        raise FormatError(
            f"table block compression type {compression}: only uncompressed tables (TensorFlow's "
            f"checkpoint bundles) are read"
        )
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_index(index_path) -> dict[str, dict]:
    """{tensor name: {'dtype', 'shape', 'shard', 'offset', 'size'}} and the header under ''
    ({'num_shards'})."""
    with open(index_path, "rb") as f:
        data = f.read()
    if len(data) < FOOTER_BYTES or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise FormatError(
            f"{index_path} is not a TensorFlow checkpoint index (no table magic in its footer)"
        )
    footer = data[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0)  # metaindex handle (unused: no filter blocks)
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries = {}
    for _, handle in _block_entries(data, index_offset, index_size):
        block_offset, p = _varint(handle, 0)
        block_size, _ = _varint(handle, p)
        for key, value in _block_entries(data, block_offset, block_size):
            fields = proto_fields(value)
            name = key.decode("utf-8")
            if name == "":
                endianness = _field(fields, 2, 0)
                if endianness != 0:
                    raise FormatError(
                        f"{index_path}: big-endian checkpoint bundles are not supported"
                    )
                entries[""] = {"num_shards": _field(fields, 1, 1)}
                continue
            if any(n == 7 for n, _ in fields):
                raise FormatError(
                    f"{index_path}: tensor {name!r} is stored in slices (partitioned variable); "
                    f"not supported"
                )
            shape_fields = proto_fields(_field(fields, 2, b""))
            shape = tuple(_field(proto_fields(dim), 1, 0) for n, dim in shape_fields if n == 2)
            entries[name] = {
                "dtype": _field(fields, 1, 0),
                "shape": shape,
                "shard": _field(fields, 3, 0),
                "offset": _field(fields, 4, 0),
                "size": _field(fields, 5, 0),
            }
    return entries


def read_variables(prefix) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint bundle `prefix` (e.g. MODULE/variables/variables) as numpy
    arrays."""
    index_path = f"{prefix}.index"
    if not os.path.isfile(index_path):
        raise FileNotFoundError(
            f"{index_path} not found; expected a TF1 module's variables/variables.index"
        )
    entries = read_index(index_path)
    num_shards = entries.pop("", {"num_shards": 1})["num_shards"]
    shards = {}
    out = {}
    for name, e in entries.items():
        if e["dtype"] not in DTYPES:
            raise FormatError(
                f"tensor {name!r} has TensorFlow dtype enum {e['dtype']}, which this reader does "
                f"not convert"
            )
        dtype = np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")
        if e["size"] != int(np.prod(e["shape"], dtype=np.int64)) * dtype.itemsize:
            raise FormatError(
                f"tensor {name!r}: {e['size']} bytes for shape {e['shape']} of {dtype}"
            )
        if e["shard"] not in shards:
            path = f"{prefix}.data-{e['shard']:05d}-of-{num_shards:05d}"
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} not found; the checkpoint index names {num_shards} data shard(s)"
                )
            shards[e["shard"]] = np.memmap(path, dtype=np.uint8, mode="r")
        raw = shards[e["shard"]][e["offset"] : e["offset"] + e["size"]]
        if len(raw) != e["size"]:
            raise FormatError(
                f"tensor {name!r} runs past the end of its data shard (truncated file?)"
            )
        out[name] = (
            np.frombuffer(raw.tobytes(), dtype).astype(dtype.newbyteorder("=")).reshape(e["shape"])
        )
    return out


# ----------------------------------------------------------------------------------- graph constants


def read_graph_def(saved_model_path, tags=()):
    """The GraphDef (tensorboardX proto) of the MetaGraphDef with exactly `tags` (TF Hub: the
    default, empty tag set) in a saved_model.pb."""
    from tensorboardX.proto import graph_pb2

    if not os.path.isfile(saved_model_path):
        raise FileNotFoundError(
            f"{saved_model_path} not found; expected a TF1 module's saved_model.pb"
        )
    with open(saved_model_path, "rb") as f:
        data = f.read()
    try:
        metas = [proto_fields(v) for n, v in proto_fields(data) if n == 2]  # SavedModel.meta_graphs
    except (FormatError, struct.error) as e:
        raise FormatError(f"{saved_model_path} is not a SavedModel protobuf ({e})") from e
    found = []
    for meta in metas:
        info = proto_fields(_field(meta, 1, b""))  # MetaGraphDef.meta_info_def
        meta_tags = sorted(v.decode() for n, v in info if n == 4)  # MetaInfoDef.tags
        found.append(meta_tags)
        if meta_tags == sorted(tags):
            graph = graph_pb2.GraphDef()
            graph.ParseFromString(_field(meta, 2, b""))  # MetaGraphDef.graph_def
            return graph
    raise FormatError(
        f"{saved_model_path} has no meta graph with tags {sorted(tags)} (it has {found})"
    )


def tensor_value(tensor) -> np.ndarray:
    """numpy value of a TensorProto (tensorboardX proto)."""
    if tensor.dtype not in DTYPES:
        raise FormatError(f"constant of TensorFlow dtype enum {tensor.dtype} is not converted")
    dtype = np.dtype(DTYPES[tensor.dtype])
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    count = int(np.prod(shape, dtype=np.int64))
    if tensor.tensor_content:
        return (
            np.frombuffer(tensor.tensor_content, dtype.newbyteorder("<"))
            .astype(dtype)
            .reshape(shape)
        )
    values = {
        np.float32: tensor.float_val,
        np.float64: tensor.double_val,
        np.int64: tensor.int64_val,
        np.bool_: tensor.bool_val,
    }.get(dtype.type, tensor.int_val)
    values = np.asarray(values, dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1 or (values.size == 0 and count == 0):  # a splat: one value fills the tensor
        return np.full(shape, values.ravel()[0] if values.size else 0, dtype)
    if values.size == 0:
        return np.zeros(shape, dtype)
    # TensorFlow repeats the last value to fill a partially given tensor.
    return np.concatenate([values, np.full(count - values.size, values[-1], dtype)]).reshape(shape)


def graph_constants(graph) -> dict[str, np.ndarray]:
    """{node name: value} for every node that is a constant: `Const`, and `Identity` / `Pack`
    (tf.stack) whose inputs are all constants (folded here as TensorFlow would at run time)."""
    nodes = {node.name: node for node in graph.node}
    values: dict[str, np.ndarray | None] = {}

    def value(name, depth=0):
        name = name.lstrip("^").split(":")[0]
        if name in values:
            return values[name]
        node = nodes.get(name)
        result = None
        if node is not None and depth < 64:
            # strings etc. are skipped
            if node.op == "Const" and node.attr["value"].tensor.dtype in DTYPES:
                result = tensor_value(node.attr["value"].tensor)
            elif node.op == "Identity" and node.input:
                result = value(node.input[0], depth + 1)
            elif node.op == "Pack":
                parts = [value(i, depth + 1) for i in node.input if not i.startswith("^")]
                if (
                    parts
                    and all(p is not None for p in parts)
                    and len({p.shape for p in parts}) == 1
                ):
                    result = np.stack(parts, axis=node.attr["axis"].i)
        values[name] = result
        return result

    return {name: v for name in nodes if (v := value(name)) is not None}
