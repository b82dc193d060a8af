/* The work parallel_sum.c (guest) and parallel_sum_baseline.c (native C) split over threads, so both
 * run the same loop: a splitmix64 mix of each index, summed. Each step depends on the index only, so
 * the total is the same however the range is split, and the sum keeps the compiler from folding it. */
typedef struct {
  unsigned long long begin, end, sum;
} parallel_sum_part;

static unsigned long long parallel_sum_range(unsigned long long begin, unsigned long long end) {
  unsigned long long sum = 0;
  for (unsigned long long i = begin; i < end; i++) {
    unsigned long long z = i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    sum += z ^ (z >> 31);
  }
  return sum;
}

/* Thread t of n gets the t-th slice of [0, total). */
static void parallel_sum_split(parallel_sum_part *part, unsigned t, unsigned n, unsigned long long total) {
  part->begin = total / n * t;
  part->end = t + 1 == n ? total : total / n * (t + 1);
  part->sum = 0;
}

/* "<nanoseconds> <sum in hex>\n" into text; returns the length. */
static int parallel_sum_format(char *text, unsigned long long ns, unsigned long long sum) {
  char digits[24];
  int n = 0, len = 0;
  do digits[n++] = (char)('0' + ns % 10); while (ns /= 10);
  while (n) text[len++] = digits[--n];
  text[len++] = ' ';
  for (int shift = 60; shift >= 0; shift -= 4) text[len++] = "0123456789abcdef"[(sum >> shift) & 15];
  text[len++] = '\n';
  return len;
}
