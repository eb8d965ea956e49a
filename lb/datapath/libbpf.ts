/**
 * The raw FFI surface: libbpf.so.1 and the few libc calls around it, declared once through koffi.
 * Everything above this file speaks in typed classes; nothing else calls koffi on libbpf.
 */
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

export const bpfObjectPtr = koffi.pointer('bpf_object', koffi.opaque());
export const bpfProgramPtr = koffi.pointer('bpf_program', koffi.opaque());
export const bpfMapPtr = koffi.pointer('bpf_map', koffi.opaque());
export const btfPtr = koffi.pointer('btf', koffi.opaque());
export const ringBufferPtr = koffi.pointer('ring_buffer', koffi.opaque());

export const ringBufferSampleFn = koffi.proto('int xlb_ring_buffer_sample_fn(void *ctx, void *data, size_t size)');
export const printFn = koffi.proto('int xlb_libbpf_print_fn(int level, const char *fmt, void *args)');

export const libbpf = {
  libbpf_get_error: lib.func('long libbpf_get_error(const void *ptr)'),
  libbpf_set_print: lib.func('void *libbpf_set_print(xlb_libbpf_print_fn *fn)'),
  libbpf_num_possible_cpus: lib.func('int libbpf_num_possible_cpus(void)'),

  bpf_object__open_file: lib.func('bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
  bpf_object__load: lib.func('int bpf_object__load(bpf_object *obj)'),
  bpf_object__close: lib.func('void bpf_object__close(bpf_object *obj)'),
  bpf_object__name: lib.func('const char *bpf_object__name(const bpf_object *obj)'),
  bpf_object__next_program: lib.func('bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prev)'),
  bpf_object__next_map: lib.func('bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *prev)'),
  bpf_object__btf: lib.func('btf *bpf_object__btf(const bpf_object *obj)'),

  bpf_program__name: lib.func('const char *bpf_program__name(const bpf_program *prog)'),
  bpf_program__fd: lib.func('int bpf_program__fd(const bpf_program *prog)'),
  bpf_program__section_name: lib.func('const char *bpf_program__section_name(const bpf_program *prog)'),

  bpf_map__name: lib.func('const char *bpf_map__name(const bpf_map *map)'),
  bpf_map__fd: lib.func('int bpf_map__fd(const bpf_map *map)'),
  bpf_map__type: lib.func('int bpf_map__type(const bpf_map *map)'),
  bpf_map__key_size: lib.func('uint32_t bpf_map__key_size(const bpf_map *map)'),
  bpf_map__value_size: lib.func('uint32_t bpf_map__value_size(const bpf_map *map)'),
  bpf_map__max_entries: lib.func('uint32_t bpf_map__max_entries(const bpf_map *map)'),
  bpf_map__map_flags: lib.func('uint32_t bpf_map__map_flags(const bpf_map *map)'),
  bpf_map__inner_map: lib.func('bpf_map *bpf_map__inner_map(bpf_map *map)'),
  bpf_map_get_fd_by_id: lib.func('int bpf_map_get_fd_by_id(uint32_t id)'),
  bpf_prog_get_fd_by_id: lib.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  bpf_map__set_max_entries: lib.func('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
  bpf_map__set_value_size: lib.func('int bpf_map__set_value_size(bpf_map *map, uint32_t size)'),
  bpf_map__set_pin_path: lib.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
  bpf_map__is_pinned: lib.func('bool bpf_map__is_pinned(const bpf_map *map)'),
  bpf_map__unpin: lib.func('int bpf_map__unpin(bpf_map *map, const char *path)'),
  bpf_map__is_internal: lib.func('bool bpf_map__is_internal(const bpf_map *map)'),
  bpf_map__initial_value: lib.func('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *size)'),

  bpf_map_create: lib.func(
    'int bpf_map_create(int type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)',
  ),
  bpf_map_lookup_elem: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  bpf_map_lookup_elem_flags: lib.func('int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, uint64_t flags)'),
  bpf_map_update_elem: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  bpf_map_delete_elem: lib.func('int bpf_map_delete_elem(int fd, const void *key)'),
  bpf_map_get_next_key: lib.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  bpf_map_update_batch: lib.func(
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const void *opts)',
  ),
  bpf_map_delete_batch: lib.func('int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const void *opts)'),
  bpf_obj_pin: lib.func('int bpf_obj_pin(int fd, const char *pathname)'),
  bpf_obj_get: lib.func('int bpf_obj_get(const char *pathname)'),
  bpf_obj_get_info_by_fd: lib.func('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *info_len)'),

  bpf_prog_test_run_opts: lib.func('int bpf_prog_test_run_opts(int prog_fd, void *opts)'),

  bpf_xdp_attach: lib.func('int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const void *opts)'),
  bpf_xdp_detach: lib.func('int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)'),
  bpf_xdp_query: lib.func('int bpf_xdp_query(int ifindex, int flags, void *opts)'),

  bpf_tc_hook_create: lib.func('int bpf_tc_hook_create(void *hook)'),
  bpf_tc_hook_destroy: lib.func('int bpf_tc_hook_destroy(void *hook)'),
  bpf_tc_attach: lib.func('int bpf_tc_attach(const void *hook, void *opts)'),
  bpf_tc_detach: lib.func('int bpf_tc_detach(const void *hook, const void *opts)'),
  bpf_tc_query: lib.func('int bpf_tc_query(const void *hook, void *opts)'),

  bpf_prog_attach: lib.func('int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags)'),
  bpf_prog_detach2: lib.func('int bpf_prog_detach2(int prog_fd, int attachable_fd, int type)'),
  bpf_prog_query: lib.func(
    'int bpf_prog_query(int target_fd, int type, uint32_t query_flags, _Out_ uint32_t *attach_flags, void *prog_ids, _Inout_ uint32_t *prog_cnt)',
  ),
  bpf_link_create: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
  bpf_link_update: lib.func('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
  bpf_link_detach: lib.func('int bpf_link_detach(int link_fd)'),
  bpf_link_get_fd_by_id: lib.func('int bpf_link_get_fd_by_id(uint32_t id)'),
  bpf_link_get_next_id: lib.func('int bpf_link_get_next_id(uint32_t start_id, _Out_ uint32_t *next_id)'),

  ring_buffer__new: lib.func(
    'ring_buffer *ring_buffer__new(int map_fd, xlb_ring_buffer_sample_fn *sample_cb, void *ctx, const void *opts)',
  ),
  ring_buffer__consume: lib.func('int ring_buffer__consume(ring_buffer *rb)'),
  ring_buffer__epoll_fd: lib.func('int ring_buffer__epoll_fd(const ring_buffer *rb)'),
  ring_buffer__free: lib.func('void ring_buffer__free(ring_buffer *rb)'),

  btf__parse: lib.func('btf *btf__parse(const char *path, void *ext)'),
  btf__free: lib.func('void btf__free(btf *btf)'),
  btf__raw_data: lib.func('const void *btf__raw_data(const btf *btf, _Out_ uint32_t *size)'),
};

export const libcCalls = {
  close: libc.func('int close(int fd)'),
  flock: libc.func('int flock(int fd, int operation)'),
  sched_setaffinity: libc.func('int sched_setaffinity(int pid, size_t cpusetsize, const void *mask)'),
  setns: libc.func('int setns(int fd, int nstype)'),
  if_nametoindex: libc.func('unsigned int if_nametoindex(const char *ifname)'),
  epoll_wait: libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
  vsnprintf: libc.func('int vsnprintf(char *buf, size_t size, const char *fmt, void *args)'),
};

/** Native memory that stays put while the kernel reads or writes it (opts structs, test-run buffers). */
export class NativeBuffer {
  readonly pointer: unknown;
  readonly address: bigint;
  readonly bytes: Buffer;

  constructor(readonly length: number) {
    this.pointer = koffi.alloc('uint8_t', Math.max(length, 1));
    this.address = koffi.address(this.pointer);
    this.bytes = Buffer.from(koffi.view(this.pointer, Math.max(length, 1)), 0, length);
    this.bytes.fill(0);
  }

  static from(data: Uint8Array): NativeBuffer {
    const buffer = new NativeBuffer(data.length);
    buffer.bytes.set(data);
    return buffer;
  }

  free(): void {
    koffi.free(this.pointer);
  }
}

/** koffi converts `const char *` results to strings; NULL becomes null. */
export function readCString(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

export function copyFromPointer(pointer: unknown, length: number): Buffer {
  return Buffer.from(new Uint8Array(koffi.view(pointer, length)));
}

export function isNull(pointer: unknown): boolean {
  return pointer === null || koffi.address(pointer) === 0n;
}

export { koffi };
