"""Image reading policy: every odd file is either a documented conversion or a DataError naming the file."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from srkit.core.errors import DataError
from srkit.data.image_io import decode_image, encode_png, img_to_tensor, read_image, tensor_to_img, write_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def save(path, img: Image.Image, fmt: str = 'PNG', **kwargs):
    img.save(path, format=fmt, **kwargs)
    return path


def png16(values: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one), built from its chunks."""
    h, w, _ = values.shape
    rows = b''.join(b'\x00' + values[y].astype('>u2').tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    header = struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')


def assert_refused(path, *words):
    with pytest.raises(DataError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    return message


def test_rgb_round_trip_is_exact(tmp_path):
    write_image(tmp_path / 'a.png', RGB)
    out = read_image(tmp_path / 'a.png')
    assert out.dtype == np.uint8 and np.array_equal(out, RGB)
    assert [p.name for p in tmp_path.iterdir()] == ['a.png']  # no temporary file left behind


def test_write_image_replaces_atomically_and_refuses_unknown_suffix(tmp_path):
    write_image(tmp_path / 'a.png', RGB)
    write_image(tmp_path / 'a.png', 255 - RGB)
    assert np.array_equal(read_image(tmp_path / 'a.png'), 255 - RGB)
    with pytest.raises(DataError, match='unknown image extension'):
        write_image(tmp_path / 'b.xyz', RGB)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.png']
    with pytest.raises(TypeError):
        write_image(tmp_path / 'c.png', RGB.astype(np.float32))


def test_grayscale_is_repeated_to_three_channels(tmp_path):
    grey = RGB[..., 0]
    out = read_image(save(tmp_path / 'g.png', Image.fromarray(grey)))
    assert out.shape == (12, 10, 3)
    assert all(np.array_equal(out[..., c], grey) for c in range(3))


def test_palette_is_converted_to_rgb(tmp_path):
    source = Image.fromarray(RGB).quantize(colors=16)
    expected = np.asarray(source.convert('RGB'))
    out = read_image(save(tmp_path / 'p.png', source))
    assert np.array_equal(out, expected)


def test_palette_with_transparency_is_refused(tmp_path):
    source = Image.fromarray(RGB).quantize(colors=16)
    assert_refused(save(tmp_path / 'pt.png', source, transparency=0), 'transparency')


def test_opaque_alpha_is_dropped_and_transparent_alpha_refused(tmp_path):
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    assert np.array_equal(read_image(save(tmp_path / 'o.png', Image.fromarray(rgba))), RGB)
    la = np.dstack([RGB[..., 0], np.full(RGB.shape[:2], 255, np.uint8)])
    assert np.array_equal(read_image(save(tmp_path / 'la.png', Image.fromarray(la, 'LA')))[..., 1], RGB[..., 0])
    rgba[0, 0, 3] = 128
    message = assert_refused(save(tmp_path / 't.png', Image.fromarray(rgba)), 'transparency', 'RGBA')
    assert '1 pixels not fully opaque' in message


def test_16bit_is_refused_by_default_and_keeps_high_byte_when_allowed(tmp_path):
    values = RNG.integers(0, 65536, (6, 5, 3))
    (tmp_path / 'rgb16.png').write_bytes(png16(values))
    assert_refused(tmp_path / 'rgb16.png', '8-bit', 'allow_16bit')
    assert np.array_equal(read_image(tmp_path / 'rgb16.png', allow_16bit=True), values >> 8)
    grey = values[..., 0].astype(np.uint16)
    save(tmp_path / 'grey16.png', Image.fromarray(grey))
    assert_refused(tmp_path / 'grey16.png', 'more than 8 bits')
    out = read_image(tmp_path / 'grey16.png', allow_16bit=True)
    assert np.array_equal(out, np.repeat((grey >> 8)[..., None], 3, axis=2))


def test_float_image_is_always_refused(tmp_path):
    path = save(tmp_path / 'f.tif', Image.fromarray(RGB[..., 0].astype(np.float32)), 'TIFF')
    with pytest.raises(DataError, match='floating-point'):
        read_image(path, allow_16bit=True)


def test_cmyk_jpeg_is_converted(tmp_path):
    path = save(tmp_path / 'c.jpg', Image.new('CMYK', (16, 16), (0, 255, 255, 0)), 'JPEG', quality=95)
    out = read_image(path)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 8  # pure red, up to JPEG error


def test_zero_byte_file(tmp_path):
    (tmp_path / 'z.png').write_bytes(b'')
    assert_refused(tmp_path / 'z.png', 'empty')


def test_not_an_image(tmp_path):
    (tmp_path / 'notes.png').write_text('this is text, not a picture')
    assert_refused(tmp_path / 'notes.png', 'not an image')


@pytest.mark.parametrize('fmt,suffix', [('PNG', 'png'), ('JPEG', 'jpg')])
def test_truncated_file(tmp_path, fmt, suffix):
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format=fmt)
    path = tmp_path / f'cut.{suffix}'
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    assert_refused(path, 'truncated or corrupt')


def test_corrupt_data_after_a_valid_header(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format='PNG')
    data = bytearray(buffer.getvalue())
    data[60:80] = b'\xff' * 20  # inside the compressed image data
    (tmp_path / 'bad.png').write_bytes(bytes(data))
    assert_refused(tmp_path / 'bad.png')


def test_wrong_extension_is_read_by_content(tmp_path):
    """The extension is ignored on reading: a PNG named .jpg is read losslessly as the PNG it is."""
    path = tmp_path / 'actually_png.jpg'
    path.write_bytes(encode_png(RGB))
    assert np.array_equal(read_image(path), RGB)


def test_missing_file_and_named_bytes(tmp_path):
    assert_refused(tmp_path / 'nope.png', 'not found')
    with pytest.raises(DataError, match='db.lmdb/key7: the file is empty'):
        decode_image(b'', 'db.lmdb/key7')
    with pytest.raises(DataError, match='^key9: not an image'):
        read_image(b'garbage', name='key9')


def test_tensor_conversions_round_as_saved_images():
    tensor = img_to_tensor(RGB)
    assert tensor.shape == (3, 12, 10) and tensor.dtype == torch.float32
    assert float(tensor.max()) <= 1.0
    assert np.array_equal(tensor_to_img(tensor), RGB)
    assert np.array_equal(tensor_to_img(tensor[None]), RGB)
    odd = torch.tensor([-0.2, 1.7, 0.5 / 255 + 1e-6, 0.5 / 255 - 1e-6, 100.4 / 255, 100.6 / 255]).view(1, 1, 6)
    assert tensor_to_img(odd.expand(3, 1, 6))[0, :, 0].tolist() == [0, 255, 1, 0, 100, 101]


def test_a_dataset_reads_16bit_images_when_its_io_backend_allows_them(tmp_path):
    """The refusal names the option that works in an option file, and that option works."""
    from srkit.data.single_image_dataset import SingleImageDataset

    values = RNG.integers(0, 65536, (6, 5, 3))
    (tmp_path / 'lq').mkdir()
    (tmp_path / 'lq' / 'rgb16.png').write_bytes(png16(values))
    with pytest.raises(DataError, match=r'set io_backend: \{allow_16bit: true\} in this dataset'):
        SingleImageDataset(str(tmp_path / 'lq'), io_backend={'type': 'disk'})[0]
    allowed = SingleImageDataset(str(tmp_path / 'lq'), io_backend={'type': 'disk', 'allow_16bit': True})[0]
    assert np.array_equal(tensor_to_img(allowed['lq']), values >> 8)
