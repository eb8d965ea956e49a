/*
 * Plain C peer for the Maglev benchmark: the same population step as lb/maglev/table.ts
 * (populateMaglevTable), so the TypeScript figure can be read as a ratio to C.
 *
 * Timing scope, identical to the TypeScript side: per build, allocate the u16 table (filled with the
 * empty sentinel), the per-backend next positions and weight counters, then run the weighted turns.
 * Hashing and sorting are done once by the benchmark and passed in.
 *
 * usage: peer INPUT ITERATIONS TABLE_OUT
 *   INPUT: little-endian u32 words: size, count, id_limit, then offsets[count], skips[count],
 *          weights[count], ids[count] (backends in Cilium's sorted order).
 *   TABLE_OUT: the last table built, as little-endian u32 words.
 *   stdout: "mean_ns <mean nanoseconds per build> checksum <sum over all builds>"
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EMPTY 0xffffu

struct input {
	uint32_t size, count, id_limit;
	uint32_t *offsets, *skips, *weights, *ids;
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static uint32_t *read_words(FILE *f, uint32_t n)
{
	uint32_t *words = malloc((size_t)n * sizeof(*words) + 1);
	if (!words)
		die("malloc");
	if (fread(words, sizeof(*words), n, f) != n)
		die("short input");
	return words;
}

static struct input read_input(const char *path)
{
	struct input in;
	uint32_t header[3];
	FILE *f = fopen(path, "rb");

	if (!f)
		die(path);
	if (fread(header, sizeof(header[0]), 3, f) != 3)
		die("short header");
	in.size = header[0];
	in.count = header[1];
	in.id_limit = header[2];
	in.offsets = read_words(f, in.count);
	in.skips = read_words(f, in.count);
	in.weights = read_words(f, in.count);
	in.ids = read_words(f, in.count);
	fclose(f);
	return in;
}

/* Cilium's weighted turns (see table.ts); the caller frees the table. */
static uint16_t *populate(const struct input *in)
{
	const uint32_t m = in->size, count = in->count;
	uint16_t *table = malloc((size_t)m * sizeof(*table));
	uint32_t *next = malloc((size_t)count * sizeof(*next));
	double *counters = malloc((size_t)count * sizeof(*counters));
	uint64_t weight_sum = 0;
	uint32_t first = 0;
	int weighted;

	if (!table || !next || !counters)
		die("malloc");
	memset(table, 0xff, (size_t)m * sizeof(*table));
	memcpy(next, in->offsets, (size_t)count * sizeof(*next));
	for (uint32_t i = 0; i < count; i++)
		weight_sum += in->weights[i];
	for (uint32_t i = 0; i < count; i++)
		counters[i] = (double)in->weights[i] / (double)count;
	weighted = weight_sum / count > 1;

	for (uint32_t n = 0; n < m; n++) {
		uint32_t i = first, slot, skip;

		if (++first == count)
			first = 0;
		if (weighted) {
			while ((uint64_t)(n + 1) * in->weights[i] < (uint64_t)counters[i])
				if (++i == count)
					i = 0;
			counters[i] += (double)weight_sum;
		}
		skip = in->skips[i];
		slot = next[i];
		while (table[slot] != EMPTY) {
			slot += skip;
			if (slot >= m)
				slot -= m;
		}
		table[slot] = (uint16_t)in->ids[i];
		slot += skip;
		if (slot >= m)
			slot -= m;
		next[i] = slot;
	}
	free(next);
	free(counters);
	return table;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct input in;
	long iterations;
	uint64_t checksum = 0, start, elapsed;
	uint16_t *table;
	FILE *out;

	if (argc != 4) {
		fprintf(stderr, "usage: %s INPUT ITERATIONS TABLE_OUT\n", argv[0]);
		return 2;
	}
	in = read_input(argv[1]);
	iterations = strtol(argv[2], NULL, 10);
	if (iterations < 1 || in.count == 0 || in.id_limit > EMPTY) {
		fprintf(stderr, "need ITERATIONS >= 1, backends >= 1, and ids below %u (u16 table)\n", EMPTY);
		return 2;
	}

	/* Warm caches and the allocator as the TypeScript side's warm-up does. */
	for (long k = 0; k < iterations / 10 + 1; k++)
		free(populate(&in));

	start = now_ns();
	for (long k = 0; k < iterations; k++) {
		table = populate(&in);
		checksum += table[k % in.size];
		free(table);
	}
	elapsed = now_ns() - start;

	table = populate(&in);
	out = fopen(argv[3], "wb");
	if (!out)
		die(argv[3]);
	for (uint32_t s = 0; s < in.size; s++) {
		uint32_t word = table[s];
		fwrite(&word, sizeof(word), 1, out);
	}
	fclose(out);
	free(table);
	printf("mean_ns %.1f checksum %llu\n", (double)elapsed / (double)iterations, (unsigned long long)checksum);
	return 0;
}
