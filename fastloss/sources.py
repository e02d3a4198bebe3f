"""One column of numbers from a file, read in chunks of rows with bounded memory.

A source is named ``FILE`` or ``FILE:column``; FILE may also be a directory
(its data files, in subdirectories too, as Spark, Dask and Hive-partitioned
datasets are written) or a glob (``scores/part-*.parquet``), whose files are
read one after another in the order of their paths:

* ``.npy``: memory-mapped; each chunk is a view of the mapping, whose pages
  are released after use, so resident memory stays one chunk.
* ``.npz``: the member ``column`` (or the only one) streamed out of the zip,
  compressed or not.
* ``.parquet`` / ``.pq`` and ``.csv``: read with pyarrow (the ``fastloss[io]``
  extra) in record batches.  Parquet list columns of equal lengths become
  2-D arrays; CSV columns are read as float64.

User mistakes (missing files, unknown columns, text where numbers belong,
missing values) raise ``SourceError`` with a one-line message.
"""
import glob
import mmap
import os
import zipfile

import numpy as np


class SourceError(ValueError):
    """A file or column that cannot be read as numbers."""


def _split_spec(spec):
    """(path, column or None) from ``FILE`` or ``FILE:column``."""
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, column = spec.rsplit(":", 1)
    return path, column or None


def _check_numeric(dtype, what):
    if dtype.kind not in "biuf":
        raise SourceError(f"{what} holds {dtype}, not numbers")


def exact_chunks(batches, rows):
    """Arrays of exactly ``rows`` rows (the last may be shorter) from arrays of any lengths."""
    pending, have = [], 0
    for batch in batches:
        while len(batch):
            take = min(rows - have, len(batch))
            piece, batch = batch[:take], batch[take:]
            have += take
            if have == rows:
                yield np.concatenate(pending + [piece]) if pending else piece
                pending, have = [], 0
            else:
                # a copy: kept past its batch's turn, when the batch's memory (a file
                # mapping, closed at the end of its file) may be gone
                pending.append(np.array(piece))
    if have:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


class NpyColumn:
    """A memory-mapped .npy file."""

    def __init__(self, path, column, label):
        if column is not None:
            raise SourceError(f"{label}: {path} is a .npy file, which has no columns")
        try:
            header = np.load(path, mmap_mode="r")
        except ValueError as e:
            raise SourceError(f"{label}: {path} is not a readable .npy array ({e})") from None
        _check_numeric(header.dtype, f"{label}: {path}")
        self.label, self.path = label, path
        self.rows = header.shape[0] if header.ndim else 1
        self.row_shape = header.shape[1:]
        self.dtype = header.dtype
        self._shape, self._offset = header.shape or (1,), header.offset
        self._order = "F" if header.flags.f_contiguous and not header.flags.c_contiguous else "C"
        del header

    def chunks(self, rows):
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == self._offset:             # no data: nothing to map
                return
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        data = np.ndarray(self._shape, self.dtype, buffer=mapped, offset=self._offset,
                          order=self._order)
        row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape))
        try:
            for lo in range(0, self.rows, rows):
                yield data[lo:lo + rows]
                if self._order == "C":
                    self._release(mapped, self._offset + lo * row_bytes, rows * row_bytes)
        finally:
            del data
            try:
                mapped.close()
            except BufferError:                   # a caller still holds a chunk
                pass

    @staticmethod
    def _release(mapped, start, length):
        """Drop the pages of one chunk from this process (they stay in the page cache)."""
        if not hasattr(mapped, "madvise"):      # pragma: no cover (not Linux/macOS)
            return
        page = mmap.PAGESIZE
        begin = start // page * page
        end = min(len(mapped), start + length) // page * page
        if end > begin:
            mapped.madvise(mmap.MADV_DONTNEED, begin, end - begin)


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


class NpzColumn:
    """One member of a .npz archive, streamed out of the zip."""

    def __init__(self, path, column, label):
        self.label, self.path = label, path
        try:
            with zipfile.ZipFile(path) as z:
                names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
                if column is None:
                    if len(names) != 1:
                        raise SourceError(f"{label}: {path} holds {', '.join(names) or 'nothing'}; "
                                          f"name one as {path}:NAME")
                    column = names[0]
                elif column not in names:
                    raise SourceError(f"{label}: {path} has no array {column!r} "
                                      f"(it has: {', '.join(names)})")
                self.member = column + ".npy"
                with z.open(self.member) as f:
                    shape, fortran, self.dtype = self._header(f)
        except zipfile.BadZipFile as e:
            raise SourceError(f"{label}: {path} is not a .npz archive ({e})") from None
        _check_numeric(self.dtype, f"{label}: {path}:{column}")
        if fortran and len(shape) > 1:
            raise SourceError(f"{label}: {path}:{column} is stored in Fortran order, which cannot "
                              f"be streamed by rows; save it C-ordered (or as .npy)")
        self.rows = shape[0] if shape else 1
        self.row_shape = shape[1:]

    def _header(self, f):
        version = np.lib.format.read_magic(f)
        if version not in _NPY_HEADERS:
            raise SourceError(f"{self.label}: {self.path}: unsupported .npy version {version}")
        return _NPY_HEADERS[version](f)

    def chunks(self, rows):
        row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape))
        with zipfile.ZipFile(self.path) as z, z.open(self.member) as f:
            self._header(f)
            for lo in range(0, self.rows, rows):
                n = min(rows, self.rows - lo)
                raw = f.read(n * row_bytes)
                if len(raw) != n * row_bytes:
                    raise SourceError(f"{self.label}: {self.path}:{self.member} is truncated")
                yield np.frombuffer(raw, self.dtype).reshape(n, *self.row_shape)


def _pyarrow(label, path):
    try:
        import pyarrow as pa
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise SourceError(f"{label}: reading {path} needs pyarrow: pip install 'fastloss[io]'") \
            from None
    return pa


def _choose_column(names, column, label, path):
    if column is None:
        if len(names) != 1:
            raise SourceError(f"{label}: {path} has columns {', '.join(names)}; name one as "
                              f"{path}:COLUMN")
        return names[0]
    if column not in names:
        raise SourceError(f"{label}: {path} has no column {column!r} (it has: {', '.join(names)})")
    return column


def _arrow_to_numpy(array, pa, what):
    """A numeric (or list-of-numeric) Arrow array as a NumPy array."""
    if array.null_count:
        raise SourceError(f"{what} has {array.null_count} missing value(s)")
    t = array.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = np.unique(array.value_lengths().to_numpy(zero_copy_only=False)) \
            if len(array) else np.array([0])
        if lengths.size > 1:
            raise SourceError(f"{what} holds lists of different lengths")
        values = _arrow_to_numpy(array.flatten(), pa, what)
        return values.reshape(len(array), int(lengths[0]))
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise SourceError(f"{what} holds {t}, not numbers")
    return array.to_numpy(zero_copy_only=False)


class ParquetColumn:
    def __init__(self, path, column, label):
        pa = _pyarrow(label, path)
        try:
            self._file = pa.parquet.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise SourceError(f"{label}: {path} is not a readable Parquet file ({e})") from None
        self.label, self.path, self._pa = label, path, pa
        self.column = _choose_column(self._file.schema_arrow.names, column, label, path)
        self.rows = self._file.metadata.num_rows
        first = next(self._batches(1), np.empty(0))
        self.row_shape, self.dtype = first.shape[1:], first.dtype

    def _batches(self, rows):
        what = f"{self.label}: {self.path}:{self.column}"
        for batch in self._file.iter_batches(batch_size=rows, columns=[self.column]):
            yield _arrow_to_numpy(batch.column(0), self._pa, what)

    def chunks(self, rows):
        return exact_chunks(self._batches(rows), rows)


class CsvColumn:
    def __init__(self, path, column, label):
        pa = _pyarrow(label, path)
        self.label, self.path, self._pa = label, path, pa
        try:
            with pa.csv.open_csv(path) as reader:
                names = reader.schema.names
        except (pa.ArrowException, OSError) as e:
            raise SourceError(f"{label}: {path} is not a readable CSV file ({e})") from None
        self.column = _choose_column(names, column, label, path)
        self.rows = None                           # known only at the end
        self.row_shape, self.dtype = (), np.dtype(np.float64)

    def _batches(self):
        pa = self._pa
        options = pa.csv.ConvertOptions(include_columns=[self.column],
                                        column_types={self.column: pa.float64()})
        what = f"{self.label}: {self.path}:{self.column}"
        try:
            with pa.csv.open_csv(self.path, convert_options=options,
                                 read_options=pa.csv.ReadOptions(block_size=1 << 24)) as reader:
                for batch in reader:
                    yield _arrow_to_numpy(batch.column(0), pa, what)
        except pa.ArrowInvalid as e:
            raise SourceError(f"{what}: {str(e).splitlines()[0]}") from None

    def chunks(self, rows):
        return exact_chunks(self._batches(), rows)


READERS = {".npy": NpyColumn, ".npz": NpzColumn, ".parquet": ParquetColumn, ".pq": ParquetColumn,
           ".csv": CsvColumn}


class ManyFilesColumn:
    """One column over several files (the parts of a directory, or a glob's matches), read
    one after another in the order of their paths, as one column."""

    def __init__(self, parts, label, where):
        self.parts = parts
        shapes = {part.row_shape for part in parts}
        if len(shapes) > 1:
            raise SourceError(f"{label}: the files of {where} have rows of different shapes "
                              f"{sorted(shapes)}")
        self.row_shape = shapes.pop()
        self.dtype = np.result_type(*(part.dtype for part in parts))
        rows = [part.rows for part in parts]
        self.rows = None if None in rows else sum(rows)

    def chunks(self, rows):
        return exact_chunks((chunk for part in self.parts for chunk in part.chunks(rows)), rows)


def _files_of(path, label):
    """The data files of directory ``path`` (its subdirectories too, as partitioned datasets
    are written; names starting with "_" or ".", such as Spark's _SUCCESS, skipped)."""
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        found += [os.path.join(root, f) for f in sorted(files)
                  if not f.startswith(("_", ".")) and os.path.splitext(f)[1].lower() in READERS]
    if not found:
        raise SourceError(f"{label}: {path} holds no {', '.join(READERS)} files")
    return found


def _reader(path, label):
    ext = os.path.splitext(path)[1].lower()
    if ext not in READERS:
        raise SourceError(f"{label}: {path}: unknown file type {ext or '(none)'}; "
                          f"expected one of {', '.join(READERS)}")
    return READERS[ext]


def open_column(spec, label):
    """The column named by ``spec`` (FILE, DIRECTORY or GLOB, then optionally :column);
    ``label`` names it in errors.  A directory's or a glob's files are read in path order."""
    path, column = _split_spec(spec)
    if os.path.isfile(path):
        return _reader(path, label)(path, column, label)
    if os.path.isdir(path):
        files = _files_of(path, label)
    elif glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise SourceError(f"{label}: no file matches {path}")
    else:
        raise SourceError(f"{label}: no such file: {path}")
    types = {os.path.splitext(f)[1].lower() for f in files}
    if len(types) > 1:
        raise SourceError(f"{label}: {path} mixes file types {', '.join(sorted(types))}")
    parts = [_reader(f, label)(f, column, label) for f in files]
    return parts[0] if len(parts) == 1 else ManyFilesColumn(parts, label, path)
