/* Low-level descriptors duplicated, as console tools redirect their output: _dup and _dup2, with
 * DuplicateHandle beneath them. A duplicate shares its file's position; stdout goes into a file and
 * comes back. */
#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <sys/stat.h>

static void show(const char *path) {
  char buf[64] = {0};
  int fd = _open(path, _O_RDONLY | _O_BINARY);
  int n = _read(fd, buf, sizeof buf - 1);
  _close(fd);
  printf("%s holds %d bytes: \"%s\"\n", path, n, buf);
}

int main(void) {
  int fd = _open("dup.txt", _O_CREAT | _O_TRUNC | _O_RDWR | _O_BINARY, _S_IREAD | _S_IWRITE);
  _write(fd, "hello", 5);
  int twin = _dup(fd);
  printf("_dup gave another descriptor: %d\n", twin >= 0 && twin != fd);
  printf("the duplicate is at %ld\n", _tell(twin));
  _lseek(twin, 1, SEEK_SET);
  char buf[8] = {0};
  printf("read through the first: %d \"%s\"\n", _read(fd, buf, 3), buf);
  printf("the duplicate is at %ld\n", _tell(twin));
  _close(fd);
  printf("write through the duplicate after the first closed: %d\n", _write(twin, "!", 1));
  _close(twin);
  show("dup.txt");

  fflush(stdout);
  int saved = _dup(1);
  int out = _open("out.txt", _O_CREAT | _O_TRUNC | _O_WRONLY | _O_BINARY, _S_IREAD | _S_IWRITE);
  printf("_dup2 onto stdout: %d\n", _dup2(out, 1));
  printf("into the file\n");
  fflush(stdout);
  _dup2(saved, 1);
  _close(saved);
  _close(out);
  printf("back on stdout\n");
  show("out.txt");
  printf("_dup of a closed descriptor: %d\n", _dup(out));
  return 0;
}
