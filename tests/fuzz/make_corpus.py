#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) and the config
dictionary (tests/fuzz/config.dict). Run it from anywhere after changing a fuzz target's input
format, the config keys or the shipped configs: python3 tests/fuzz/make_corpus.py

The image-folder seeds are FuzzedDataProvider inputs: integers are read from the end of the
input, file bytes from the front (see fuzz_image_folder.cpp, whose name lists this mirrors)."""
import pathlib
import re
import struct
import zlib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"

# 8 x 8 test images encoded by OpenCV 4.6 (cv::imencode: JPEG quality 50, WebP quality 50,
# uncompressed TIFF): no Python image library is needed to regenerate the corpus.
JPEG_8X8 = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a1816"
    "16183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c6567"
    "63ffdb0043011112121815182f1a1a2f63423842636363636363636363636363636363636363636363636363"
    "6363636363636363636363636363636363636363636363636363ffc000110800080008030122000211010311"
    "01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303"
    "020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024"
    "33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566"
    "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7"
    "b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400"
    "1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407"
    "05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a"
    "162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869"
    "6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9"
    "bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c030100"
    "02110311003f00861d0bfd8a28a2b4c0626a7b15a9cf2c5d5bee7fffd9")
WEBP_8X8 = bytes.fromhex(
    "5249464642000000574542505650382036000000d001009d012a0800080002c04c25a80274010ebb05ef0000"
    "feea005d974866f5ea7ff37d4fd62b577e77d880096cf8dabbec1507c000")
TIFF_8X8 = bytes.fromhex(
    "49492a00c80000008000008000208000408000608000808000a08000c08000e0802000802020802040802060"
    "8020808020a08020c08020e08040008040208040408040608040808040a08040c08040e08060008060208060"
    "408060608060808060a08060c08060e08080008080208080408080608080808080a08080c08080e080a00080"
    "a02080a04080a06080a08080a0a080a0c080a0e080c00080c02080c04080c06080c08080c0a080c0c080c0e0"
    "80e00080e02080e04080e06080e08080e0a080e0c080e0e00b00000103000100000008000000010103000100"
    "0000080000000201030003000000520100000301030001000000010000000601030001000000020000001101"
    "040001000000080000001501030001000000030000001601030001000000080000001701040001000000c000"
    "00001c010300010000000100000053010300030000005801000000000000080008000800010001000100")


def png(width, height, color_type, bit_depth, pixel):
    """A minimal PNG: one IDAT, no filter; pixel(x, y) returns the bytes of one pixel."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


def bmp(width, height):
    """A 24-bit bottom-up BMP."""
    row = (width * 3 + 3) // 4 * 4
    pixels = b"".join(bytes([x * 30, y * 30, 99] * 1) for y in range(height) for x in range(width))
    data = b"".join(pixels[y * width * 3:(y + 1) * width * 3].ljust(row, b"\0") for y in range(height))
    header = b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return header + info + data


PNG_RGB = png(8, 8, 2, 8, lambda x, y: bytes([x * 32, y * 32, 128]))
PNG_GREY = png(4, 4, 0, 8, lambda x, y: bytes([x * 60 + y]))
PNG_RGBA = png(4, 4, 6, 8, lambda x, y: bytes([x * 60, y * 60, 7, 200]))
PNG_GREY16 = png(3, 5, 0, 16, lambda x, y: struct.pack(">H", x * 20000 + y))
BMP = bmp(5, 3)
PPM = b"P6\n4 4\n255\n" + bytes(range(48))
PGM = b"P5\n4 2\n255\n" + bytes(range(0, 256, 32))
PGM16 = b"P5\n2 2\n65535\n" + bytes(range(8))
PBM = b"P4\n8 2\n\xa5\x5a"
PPM_ASCII = b"P3\n2 1\n255\n255 0 0  0 255 0\n"

# fuzz_image_folder.cpp's lists.
SPLITS = ["train", "test"]
CLASSES = ["cat", "dog", "Bird", "a b", ".hidden", "x.png"]
STEMS = ["0", "1", "img", "a.b", ""]
EXTS = [".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp", ".PNG",
        ".JpG", ".txt", "", ".gif", ".png.txt"]


class Tree:
    """Encodes entries the way fuzz_image_folder.cpp reads them with FuzzedDataProvider."""

    def __init__(self):
        self.front = b""  # file bytes, consumed from the front
        self.back = []  # integer bytes, in the order they are consumed (from the end)

    def _entry(self, split, cls, kind):
        self.back += [SPLITS.index(split), CLASSES.index(cls), kind]

    def folder(self, split, cls):
        self._entry(split, cls, 0)
        return self

    def nested(self, split, cls, stem, ext):
        self._entry(split, cls, 2)
        self.back += [STEMS.index(stem), EXTS.index(ext)]
        return self

    def file(self, split, cls, stem, ext, data):
        assert len(data) <= 4096
        self._entry(split, cls, 1)
        self.back += [STEMS.index(stem), EXTS.index(ext), len(data) >> 8, len(data) & 0xFF]
        self.front += data
        return self

    def bytes(self):
        return self.front + bytes(reversed(self.back))


def image_folder_seeds():
    return {
        "basic": Tree()
        .file("train", "cat", "0", ".png", PNG_RGB)
        .file("train", "dog", "1", ".jpg", JPEG_8X8)
        .file("train", "cat", "a.b", ".txt", b"not an image\n")
        .file("test", "cat", "0", ".bmp", BMP)
        .file("test", "dog", "img", ".ppm", PPM),
        "formats": Tree()
        .file("train", "Bird", "0", ".webp", WEBP_8X8)
        .file("train", "Bird", "1", ".tif", TIFF_8X8)
        .file("train", "a b", "0", ".pgm", PGM)
        .file("train", "a b", "1", ".pbm", PBM)
        .file("train", "a b", "img", ".PNG", PNG_GREY)
        .file("test", "Bird", "0", ".JpG", JPEG_8X8)
        .file("test", "a b", "0", ".tiff", TIFF_8X8),
        "depths": Tree()
        .file("train", "cat", "0", ".png", PNG_RGBA)
        .file("train", "cat", "1", ".png", PNG_GREY16)
        .file("train", "cat", "img", ".pgm", PGM16)
        .file("train", "cat", "a.b", ".ppm", PPM_ASCII)
        .file("test", "cat", "0", ".jpeg", JPEG_8X8),
        "empty_class": Tree()
        .file("train", "cat", "0", ".png", PNG_RGB)
        .folder("train", "dog")
        .file("test", "cat", "0", ".png", PNG_RGB)
        .folder("test", "dog"),
        "class_mismatch": Tree()
        .file("train", "cat", "0", ".png", PNG_RGB)
        .file("test", "Bird", "0", ".png", PNG_RGB),
        "odd_names": Tree()
        .file("train", ".hidden", "", ".png", PNG_RGB)
        .file("train", ".hidden", "0", "", PNG_RGB)
        .file("train", ".hidden", "1", ".png.txt", PNG_RGB)
        .file("train", "x.png", "0", ".gif", b"GIF89a")
        .file("train", "x.png", "1", ".bmp", BMP)
        .nested("train", "x.png", "img", ".png"),
        "corrupt": Tree()
        .file("train", "cat", "0", ".png", PNG_RGB[:60])
        .file("train", "cat", "1", ".jpg", JPEG_8X8[:300])
        .file("test", "cat", "0", ".bmp", BMP[:40]),
        # Content that OpenCV would hand to GDAL ("NITF") or GDCM (DICOM); aefx refuses it.
        "other_decoders": Tree()
        .file("train", "cat", "0", ".png", b"NITF02.10" + bytes(64))
        .file("train", "cat", "1", ".tif", bytes(128) + b"DICM" + bytes(64))
        .file("test", "cat", "0", ".png", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n")
        .file("test", "cat", "1", ".ppm", b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\n"
              b"TUPLTYPE RGB\nENDHDR\nabc"),
        # Sizes over OpenCV's limits (1 << 20 wide; tools/fuzz.sh lowers the pixel limit).
        "huge_headers": Tree()
        .file("train", "dog", "0", ".ppm", b"P6\n2000000 1\n255\n" + bytes(30))
        .file("train", "dog", "1", ".pgm", b"P5\n3000 3000\n255\n" + bytes(30))
        .file("test", "dog", "0", ".png", PNG_RGB),
        "wrong_extension": Tree()
        .file("train", "dog", "0", ".png", JPEG_8X8)
        .file("train", "dog", "1", ".jpg", PNG_RGB)
        .file("test", "dog", "0", ".webp", b"RIFF\0\0\0\0WEBP"),
    }


def cifar_seeds():
    def record(label, seed):
        return bytes([label]) + bytes((i * seed + label) & 0xFF for i in range(3 * 32 * 32))
    two = record(0, 7) + record(9, 13)
    return {
        "one_record.bin": record(3, 1),
        "two_records.bin": two,
        "bad_label.bin": record(1, 3) + record(10, 5),
        "truncated.bin": two[:-1],
        "trailing_bytes.bin": two + b"\n",
        "header_only.bin": b"\x05",
    }


BROKEN_CONFIGS = {
    "overrides.yaml": b"name: fuzz\n\0pretrain.epochs=2\0classify.hidden=[64, 32]\0device=cuda:1"
                      b"\0data.root=/tmp/x\0export.tolerance=1e-3",
    "bad_override.yaml": b"name: x\0pretrain.epochz=2\0=3\0classify.hidden=[1,\0model.widths=",
    "unclosed_list.yaml": b"pretrain:\n  epochs: [1, 2\n",
    "cross_field.yaml": b"model:\n  widths: [8, 16]\ndata:\n  image_size: 9\n",
    "section_scalar.yaml": b"pretrain: 3\n",
    "wrong_types.yaml": b"seed: -1\nthreads: two\nclassify:\n  dropout: 1.0\n  hidden: 5\n",
    "null_name.yaml": b"name: ~\nstages: []\n",
    "complex_key.yaml": b"? [1, 2]\n: 3\n",
    "anchors.yaml": b"a: &x 1\nb: *x\n",
    "top_level_list.yaml": b"- 1\n- 2\n",
    "duplicate_keys.yaml": b"name: a\nname: b\n",
    "nested_flow.yaml": b"model: {widths: [[[[1]]]], blocks: {a: {b: c}}}\n",
    "tabs_and_bom.yaml": b"\xef\xbb\xbfname:\tx\n\tseed: 1\n",
    "trailing_cr.yaml": b"name: run\r",
    "control_chars.yaml": b"output_dir: \"out\\tdir\"\ndata:\n  root: \"a\\x7f\"\n",
    "many_stages.yaml": (b"model:\n  widths: [" + b", ".join([b"1"] * 70) + b"]\n  blocks: [" +
                         b", ".join([b"1"] * 70) + b"]\nclassify:\n  pool_grids: [" +
                         b", ".join([b"1"] * 70) + b"]\n"),
}


def idx_seeds():
    """IDX images files (fuzz_idx): valid plain and gzip ones, and the ways they go wrong."""
    import gzip
    img = struct.pack(">BBBBIII", 0, 0, 8, 3, 1, 4, 4) + bytes(range(16))
    return {
        "one_image_4x4": img,
        "one_image_4x4_gz": gzip.compress(img, mtime=0),
        "truncated": img[:-3],
        "trailing": img + b"\0\0",
        "labels": struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([1, 2, 3]),
        "float_type": struct.pack(">BBBBIII", 0, 0, 0x0D, 3, 1, 1, 1) + b"\0\0\0\0",
        "huge_dims": struct.pack(">BBBBIII", 0, 0, 8, 3, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
        "gz_truncated": gzip.compress(img, mtime=0)[:-6],
    }


def config_keys():
    """The keys from src/config/config.cpp's field table (what known_keys() returns)."""
    text = (ROOT / "src" / "config" / "config.cpp").read_text()
    keys = re.findall(r"AEFX_FIELD\(([\w.]+),", text)
    keys += re.findall(r'AEFX_FIELD_AS\("([\w.]+)"', text)
    return keys


def write_dict(path):
    tokens = set()
    for key in config_keys():
        tokens.add(key)
        tokens.update(key.split("."))
    values = ["cifar10-binary", "image-folder", "idx", "conv", "dense", "relu", "tanh", "sigmoid",
              "identity", "baseline", "pretrain", "classify", "evaluate", "export", "adamw",
              "adam", "sgd", "cosine", "constant", "avg", "max", "avgmax", "auto", "cpu", "cuda",
              "cuda:0", "true", "false", "~", "null", ".inf", ".nan", "0x10", "1e-4", "[", "]",
              "{", "}", ": ", "- ", "\\x0a  ", "=", ",", "&a ", "*a", "!!str ", "? ", "---", "..."]
    lines = ["# Config keys and values for fuzz_config (written by tests/fuzz/make_corpus.py)."]
    lines += ['"%s"' % t for t in sorted(tokens)]
    lines += ['"%s"' % v for v in values]
    path.write_text("\n".join(lines) + "\n")


def write_all(target, seeds):
    # Files already there are kept: inputs the fuzzer found (named by their SHA-1) stay seeds.
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (d / name).write_bytes(data.bytes() if isinstance(data, Tree) else data)


def main():
    write_all("fuzz_cifar_binary", cifar_seeds())
    write_all("fuzz_image_folder", image_folder_seeds())
    write_all("fuzz_idx", idx_seeds())
    configs = {p.name: p.read_bytes() for p in sorted((ROOT / "configs").glob("*.yaml"))}
    configs.update(BROKEN_CONFIGS)
    write_all("fuzz_config", configs)
    write_dict(HERE / "config.dict")


if __name__ == "__main__":
    main()
