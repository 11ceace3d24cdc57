// Package atomicfile replaces files so that a crash leaves either the old
// content or the new, never a mix or an empty file.
//
// Write(path, data, perm) does, in order:
//
//  1. create a temporary file in path's directory (a rename is atomic only
//     within one file system, and the directory is where it will live);
//  2. write data and fsync the file, so its content is on disk before any
//     name points to it;
//  3. close it and rename it over path;
//  4. fsync the directory, so the rename itself survives a crash.
//
// Any failure before the rename removes the temporary file and leaves path
// as it was; the error wraps the cause. A failed directory fsync is
// reported too: the new content is in place, but may not survive a crash.
package atomicfile
