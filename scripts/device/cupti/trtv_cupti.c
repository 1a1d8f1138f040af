/*
 * trtv_cupti.c: a CUPTI injection library that counts where host<->device traffic comes
 * from in a CUDA process, and writes one JSON summary per process at exit.
 *
 * The CUDA driver loads this file when CUDA_INJECTION64_PATH names it and calls
 * InitializeInjection() once, inside the process's first cuInit (driver API users such as
 * cudarc, and the CUDA runtime inside ONNX Runtime alike). libcupti is not linked: it is
 * dlopen()ed here, so a machine without it loses the trace, never the workload.
 *
 * Environment:
 *   TRTV_CUPTI_LIB           libcupti to load (else libcupti.so.13, then libcupti.so)
 *   TRTV_CUPTI_OUT           summary path; "%p" becomes the pid (default /tmp/cupti-%p.json)
 *   TRTV_CUPTI_START_AFTER_S seconds after init counted as "warmup" rather than "steady"
 *   TRTV_CUPTI_UM=0          do not try the unified memory counters
 *
 * What is counted (each split into the warmup and steady phases):
 *   activity records  MEMCPY/MEMCPY2 by copy kind x source x destination memory kind,
 *                     MEMSET by memory kind, CONCURRENT_KERNEL by name, MEMORY2
 *                     (allocations and releases) and UNIFIED_MEMORY_COUNTER by counter
 *   API callbacks     every driver and runtime API call by callback id, plus the byte size
 *                     argument of the driver's explicit memcpy calls
 *   kernel time       GPU time per kernel name and per stream, and for the steady phase the
 *                     time with at least one kernel running ("busy", the union of the
 *                     kernels' intervals) and with two or more ("overlap"): whether kernels of
 *                     several streams run side by side or one after another
 *                     (TRTV_CUPTI_MAX_INTERVALS, default 8000000, bounds the intervals kept)
 * Activity records are put in a phase by their own GPU timestamp (they reach us late, a
 * buffer at a time); API calls by the time of the call.
 */
#define _GNU_SOURCE
#include <cupti.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum { PHASE_WARMUP, PHASE_STEADY, PHASE_COUNT };
static const char *const PHASE_NAMES[PHASE_COUNT] = {"warmup", "steady"};

/* Copy and memory kinds arrive as small enums; anything past the table folds into the
 * last slot so that a newer CUPTI's new kinds are still counted. */
#define KIND_SLOTS 16
/* Callback ids of CUDA 13 stay below 1000; the last slot catches anything larger. */
#define CBID_SLOTS 4096
/* Distinct kernel names kept; past 3/4 of this the rest are counted as "<other>". */
#define NAME_SLOTS 8192
#define MAX_ERRORS 32
#define ERROR_LEN 512
#define ACTIVITY_BUFFER_SIZE (8u << 20)
#define ACTIVITY_BUFFER_ALIGN 8

/* ---- libcupti, resolved at run time ------------------------------------------------- */

/* Each entry becomes `static __typeof__(&name) p_name`, so the call signatures come from
 * the CUPTI headers themselves. Core functions: without them nothing can be traced. */
#define CUPTI_CORE_FUNCTIONS(X)                                                           \
  X(cuptiGetResultString)                                                                 \
  X(cuptiGetTimestamp)                                                                    \
  X(cuptiActivityRegisterCallbacks)                                                       \
  X(cuptiActivityEnable)                                                                  \
  X(cuptiActivityFlushAll)                                                                \
  X(cuptiActivityGetNextRecord)                                                           \
  X(cuptiSubscribe)                                                                       \
  X(cuptiEnableDomain)
#define CUPTI_OPTIONAL_FUNCTIONS(X)                                                       \
  X(cuptiGetVersion)                                                                      \
  X(cuptiGetLastError)                                                                    \
  X(cuptiActivityGetNumDroppedRecords)                                                    \
  X(cuptiActivityConfigureUnifiedMemoryCounter)                                           \
  X(cuptiGetCallbackName)

#define DECLARE_POINTER(name) static __typeof__(&name) p_##name;
CUPTI_CORE_FUNCTIONS(DECLARE_POINTER)
CUPTI_OPTIONAL_FUNCTIONS(DECLARE_POINTER)

typedef struct {
  const char *name;
  void **slot;
  int core;
} CuptiSymbol;

#define SYMBOL_CORE(name) {#name, (void **)&p_##name, 1},
#define SYMBOL_OPTIONAL(name) {#name, (void **)&p_##name, 0},
static const CuptiSymbol CUPTI_SYMBOLS[] = {
    CUPTI_CORE_FUNCTIONS(SYMBOL_CORE) CUPTI_OPTIONAL_FUNCTIONS(SYMBOL_OPTIONAL)};

/* ---- counters ------------------------------------------------------------------------- */

typedef struct {
  uint64_t count, async_count, bytes;
} CopyTally;

typedef struct {
  uint64_t count, bytes;
} ByteTally;

enum { MEMORY_OP_OTHER, MEMORY_OP_ALLOC, MEMORY_OP_RELEASE, MEMORY_OP_COUNT };
static const char *const MEMORY_OP_NAMES[MEMORY_OP_COUNT] = {"other", "alloc", "release"};

/* Guarded by g_activity_mutex: records are tallied a buffer at a time. */
typedef struct {
  CopyTally memcpy[KIND_SLOTS][KIND_SLOTS][KIND_SLOTS]; /* copy kind, src kind, dst kind */
  ByteTally memset[KIND_SLOTS];                         /* memory kind */
  ByteTally memory_ops[MEMORY_OP_COUNT][KIND_SLOTS];    /* operation, memory kind */
  uint64_t kernels;
  uint64_t kernel_ns;
  uint64_t unified[KIND_SLOTS]; /* summed value per unified memory counter kind */
  uint64_t unified_records;
  uint64_t other_records;
} ActivityTally;

typedef struct {
  char *name;
  uint64_t count[PHASE_COUNT];
  uint64_t ns[PHASE_COUNT];
} KernelName;

/* Kernel GPU time per stream (steady and warmup), the first STREAM_SLOTS streams seen. */
enum { STREAM_SLOTS = 256 };
typedef struct {
  uint32_t context, stream;
  int used;
  uint64_t count[PHASE_COUNT];
  uint64_t ns[PHASE_COUNT];
} StreamTime;

/* Steady-phase kernel intervals, for busy and overlap time at exit. */
typedef struct {
  uint64_t start, end;
} Interval;

/* Byte sizes taken from the arguments of the driver's explicit memcpy calls. */
enum { API_HTOD, API_DTOH, API_2D_HTOD, API_2D_DTOH, API_2D_OTHER, API_ANY, API_COPY_COUNT };
static const char *const API_COPY_NAMES[API_COPY_COUNT] = {
    "HtoD", "DtoH", "2D_HtoD", "2D_DtoH", "2D_other", "cuMemcpy_any"};

/* Lock-free: API callbacks come from every thread that calls CUDA. */
typedef struct {
  _Atomic uint64_t driver[CBID_SLOTS];
  _Atomic uint64_t runtime[CBID_SLOTS];
  _Atomic uint64_t copy_calls[API_COPY_COUNT];
  _Atomic uint64_t copy_bytes[API_COPY_COUNT];
} ApiTally;

static pthread_mutex_t g_activity_mutex = PTHREAD_MUTEX_INITIALIZER;
static ActivityTally g_activity[PHASE_COUNT];
static KernelName g_kernel_names[NAME_SLOTS];
static size_t g_kernel_name_count;
static uint64_t g_kernel_names_overflow[PHASE_COUNT];
static StreamTime g_streams[STREAM_SLOTS];
static uint64_t g_streams_overflow[PHASE_COUNT];
static Interval *g_intervals;
static size_t g_interval_count, g_interval_capacity, g_interval_max = 8000000;
static uint64_t g_intervals_dropped;
static uint64_t g_buffers_completed;
static uint64_t g_records;
static uint64_t g_dropped_records;

static ApiTally g_api[PHASE_COUNT];

/* ---- process state -------------------------------------------------------------------- */

static atomic_int g_init_started;
static pid_t g_pid;
static uint64_t g_init_ns;        /* CLOCK_MONOTONIC at init */
static double g_start_after_s;
static uint64_t g_steady_from_ns; /* CLOCK_MONOTONIC when the steady phase begins */
static atomic_int g_steady;
static uint64_t g_steady_from_cupti_ns; /* the same instant on CUPTI's clock; 0 if unknown */
static void *g_cupti_handle;
static char g_cupti_path[512];
static uint32_t g_cupti_version;
static int g_activity_on;
static int g_callbacks_on;
static CUpti_SubscriberHandle g_subscriber;

typedef struct {
  CUpti_ActivityKind kind;
  const char *name;
  char status[ERROR_LEN]; /* "enabled", "not tried", or the error */
} ActivityKindStatus;

static ActivityKindStatus g_kinds[] = {
    {CUPTI_ACTIVITY_KIND_MEMCPY, "MEMCPY", "not tried"},
    {CUPTI_ACTIVITY_KIND_MEMCPY2, "MEMCPY2", "not tried"},
    {CUPTI_ACTIVITY_KIND_MEMSET, "MEMSET", "not tried"},
    {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "CONCURRENT_KERNEL", "not tried"},
    {CUPTI_ACTIVITY_KIND_MEMORY2, "MEMORY2", "not tried"},
    {CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER, "UNIFIED_MEMORY_COUNTER", "not tried"},
};
#define KIND_COUNT (sizeof g_kinds / sizeof g_kinds[0])

static pthread_mutex_t g_error_mutex = PTHREAD_MUTEX_INITIALIZER;
static char g_errors[MAX_ERRORS][ERROR_LEN];
static int g_error_count;

/* ---- small helpers -------------------------------------------------------------------- */

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One stderr line per failure, also kept for the summary. */
static void report(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *format, ...) {
  char line[ERROR_LEN];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  fprintf(stderr, "trtv-cupti: %s\n", line);
  pthread_mutex_lock(&g_error_mutex);
  if (g_error_count < MAX_ERRORS) {
    snprintf(g_errors[g_error_count++], ERROR_LEN, "%s", line);
  }
  pthread_mutex_unlock(&g_error_mutex);
}

static const char *result_text(CUptiResult result) {
  const char *text = NULL;
  if (p_cuptiGetResultString == NULL || p_cuptiGetResultString(result, &text) != CUPTI_SUCCESS ||
      text == NULL) {
    static _Thread_local char fallback[32];
    snprintf(fallback, sizeof fallback, "CUptiResult %d", (int)result);
    return fallback;
  }
  return text;
}

/* Returns 1 on success; otherwise reports "<call> failed: <error>" and returns 0. */
static int cupti_ok(const char *call, CUptiResult result) {
  if (result == CUPTI_SUCCESS) return 1;
  report("%s failed: %s", call, result_text(result));
  /* CUPTI keeps the last error per thread; clear it so later calls start clean. */
  if (p_cuptiGetLastError != NULL) p_cuptiGetLastError();
  return 0;
}

static size_t kind_slot(uint32_t kind) { return kind < KIND_SLOTS ? kind : KIND_SLOTS - 1; }

static int current_phase(void) {
  if (atomic_load_explicit(&g_steady, memory_order_relaxed)) return PHASE_STEADY;
  if (monotonic_ns() < g_steady_from_ns) return PHASE_WARMUP;
  atomic_store_explicit(&g_steady, 1, memory_order_relaxed);
  return PHASE_STEADY;
}

/* Records carry CUPTI timestamps; a record without one (0) is placed by arrival time. */
static int record_phase(uint64_t start_ns) {
  if (g_steady_from_cupti_ns == 0 || start_ns == 0) return current_phase();
  return start_ns < g_steady_from_cupti_ns ? PHASE_WARMUP : PHASE_STEADY;
}

/* ---- activity records ----------------------------------------------------------------- */

static void count_kernel_name(const char *name, int phase, uint64_t ns) {
  if (name == NULL) name = "<unnamed>";
  uint64_t hash = 1469598103934665603u; /* FNV-1a */
  for (const char *c = name; *c != '\0'; c++) hash = (hash ^ (uint8_t)*c) * 1099511628211u;
  for (size_t probe = 0; probe < NAME_SLOTS; probe++) {
    KernelName *entry = &g_kernel_names[(hash + probe) % NAME_SLOTS];
    if (entry->name == NULL) {
      /* Keep a quarter free so that probing stays short. */
      if (g_kernel_name_count >= NAME_SLOTS / 4 * 3) break;
      entry->name = strdup(name);
      if (entry->name == NULL) break;
      g_kernel_name_count++;
    }
    if (strcmp(entry->name, name) == 0) {
      entry->count[phase]++;
      entry->ns[phase] += ns;
      return;
    }
  }
  g_kernel_names_overflow[phase]++;
}

static void count_kernel_stream(uint32_t context, uint32_t stream, int phase, uint64_t ns) {
  uint64_t key = ((uint64_t)context << 32) | stream;
  for (size_t probe = 0; probe < STREAM_SLOTS; probe++) {
    StreamTime *entry = &g_streams[(key * 11400714819323198485u + probe) % STREAM_SLOTS];
    if (!entry->used) {
      entry->used = 1;
      entry->context = context;
      entry->stream = stream;
    }
    if (entry->context == context && entry->stream == stream) {
      entry->count[phase]++;
      entry->ns[phase] += ns;
      return;
    }
  }
  g_streams_overflow[phase]++;
}

static void keep_interval(uint64_t start, uint64_t end) {
  if (g_interval_count == g_interval_capacity) {
    size_t capacity = g_interval_capacity ? g_interval_capacity * 2 : 65536;
    if (capacity > g_interval_max) capacity = g_interval_max;
    Interval *grown = capacity > g_interval_capacity
                          ? realloc(g_intervals, capacity * sizeof *grown)
                          : NULL;
    if (grown == NULL) {
      g_intervals_dropped++;
      return;
    }
    g_intervals = grown;
    g_interval_capacity = capacity;
  }
  g_intervals[g_interval_count].start = start;
  g_intervals[g_interval_count].end = end;
  g_interval_count++;
}

static void count_copy(uint8_t copy_kind, uint8_t src_kind, uint8_t dst_kind, uint32_t flags,
                       uint64_t bytes, uint64_t start) {
  CopyTally *tally = &g_activity[record_phase(start)]
                          .memcpy[kind_slot(copy_kind)][kind_slot(src_kind)][kind_slot(dst_kind)];
  tally->count++;
  tally->bytes += bytes;
  if (flags & CUPTI_ACTIVITY_FLAG_MEMCPY_ASYNC) tally->async_count++;
}

/* Reads only the leading fields of each record, which newer CUPTI record versions keep. */
static void count_record(const CUpti_Activity *record) {
  switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const CUpti_ActivityMemcpy7 *copy = (const CUpti_ActivityMemcpy7 *)record;
      count_copy(copy->copyKind, copy->srcKind, copy->dstKind, copy->flags, copy->bytes,
                 copy->start);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY2: {
      const CUpti_ActivityMemcpyPtoP4 *copy = (const CUpti_ActivityMemcpyPtoP4 *)record;
      count_copy(copy->copyKind, copy->srcKind, copy->dstKind, copy->flags, copy->bytes,
                 copy->start);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const CUpti_ActivityMemset5 *set = (const CUpti_ActivityMemset5 *)record;
      ByteTally *tally = &g_activity[record_phase(set->start)].memset[kind_slot(set->memoryKind)];
      tally->count++;
      tally->bytes += set->bytes;
      break;
    }
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const CUpti_ActivityKernel13 *kernel = (const CUpti_ActivityKernel13 *)record;
      int phase = record_phase(kernel->start);
      uint64_t ns = kernel->end > kernel->start ? kernel->end - kernel->start : 0;
      g_activity[phase].kernels++;
      g_activity[phase].kernel_ns += ns;
      count_kernel_name(kernel->name, phase, ns);
      count_kernel_stream(kernel->contextId, kernel->streamId, phase, ns);
      if (phase == PHASE_STEADY && ns > 0) keep_interval(kernel->start, kernel->end);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMORY2: {
      const CUpti_ActivityMemory4 *memory = (const CUpti_ActivityMemory4 *)record;
      size_t op = memory->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION
                      ? MEMORY_OP_ALLOC
                  : memory->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE
                      ? MEMORY_OP_RELEASE
                      : MEMORY_OP_OTHER;
      ByteTally *tally = &g_activity[record_phase(memory->timestamp)]
                              .memory_ops[op][kind_slot(memory->memoryKind)];
      tally->count++;
      tally->bytes += memory->bytes;
      break;
    }
    case CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER: {
      const CUpti_ActivityUnifiedMemoryCounter3 *um =
          (const CUpti_ActivityUnifiedMemoryCounter3 *)record;
      ActivityTally *tally = &g_activity[record_phase(um->start)];
      tally->unified[kind_slot(um->counterKind)] += um->value;
      tally->unified_records++;
      break;
    }
    default:
      g_activity[current_phase()].other_records++;
      break;
  }
}

static void CUPTIAPI on_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  /* A NULL buffer makes CUPTI drop records, which the summary then shows as dropped. */
  *buffer = aligned_alloc(ACTIVITY_BUFFER_ALIGN, ACTIVITY_BUFFER_SIZE);
  *size = *buffer != NULL ? ACTIVITY_BUFFER_SIZE : 0;
  *max_records = 0;
}

static void CUPTIAPI on_buffer_completed(CUcontext context, uint32_t stream_id, uint8_t *buffer,
                                         size_t size, size_t valid_size) {
  static atomic_int walk_failed;
  (void)size;
  if (buffer == NULL) return;
  pthread_mutex_lock(&g_activity_mutex);
  CUpti_Activity *record = NULL;
  for (;;) {
    CUptiResult result = p_cuptiActivityGetNextRecord(buffer, valid_size, &record);
    if (result == CUPTI_ERROR_MAX_LIMIT_REACHED) break;
    if (result != CUPTI_SUCCESS) {
      if (!atomic_exchange(&walk_failed, 1)) cupti_ok("cuptiActivityGetNextRecord", result);
      break;
    }
    g_records++;
    count_record(record);
  }
  g_buffers_completed++;
  size_t dropped = 0;
  if (p_cuptiActivityGetNumDroppedRecords != NULL &&
      p_cuptiActivityGetNumDroppedRecords(context, stream_id, &dropped) == CUPTI_SUCCESS) {
    g_dropped_records += dropped;
  }
  pthread_mutex_unlock(&g_activity_mutex);
  free(buffer);
}

/* ---- API callbacks -------------------------------------------------------------------- */

static void count_api_copy(ApiTally *tally, int category, uint64_t bytes) {
  atomic_fetch_add_explicit(&tally->copy_calls[category], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&tally->copy_bytes[category], bytes, memory_order_relaxed);
}

static void count_api_copy_2d(ApiTally *tally, const CUDA_MEMCPY2D *copy) {
  if (copy == NULL) return;
  int category = API_2D_OTHER;
  if (copy->srcMemoryType == CU_MEMORYTYPE_HOST && copy->dstMemoryType == CU_MEMORYTYPE_DEVICE) {
    category = API_2D_HTOD;
  } else if (copy->srcMemoryType == CU_MEMORYTYPE_DEVICE &&
             copy->dstMemoryType == CU_MEMORYTYPE_HOST) {
    category = API_2D_DTOH;
  }
  count_api_copy(tally, category, (uint64_t)copy->WidthInBytes * copy->Height);
}

/* One case per driver memcpy entry point (and its per-thread-stream twin): the size is
 * read from that entry point's own parameter struct. */
#define SIZED_COPY(name, category)                                                          \
  case CUPTI_DRIVER_TRACE_CBID_##name:                                                      \
    count_api_copy(tally, category, ((const name##_params *)params)->ByteCount);            \
    break;
#define COPY_2D(name)                                                                       \
  case CUPTI_DRIVER_TRACE_CBID_##name:                                                      \
    count_api_copy_2d(tally, ((const name##_params *)params)->pCopy);                       \
    break;

static void count_driver_copy(ApiTally *tally, CUpti_CallbackId cbid, const void *params) {
  switch (cbid) {
    SIZED_COPY(cuMemcpyHtoD_v2, API_HTOD)
    SIZED_COPY(cuMemcpyHtoD_v2_ptds, API_HTOD)
    SIZED_COPY(cuMemcpyHtoDAsync_v2, API_HTOD)
    SIZED_COPY(cuMemcpyHtoDAsync_v2_ptsz, API_HTOD)
    SIZED_COPY(cuMemcpyDtoH_v2, API_DTOH)
    SIZED_COPY(cuMemcpyDtoH_v2_ptds, API_DTOH)
    SIZED_COPY(cuMemcpyDtoHAsync_v2, API_DTOH)
    SIZED_COPY(cuMemcpyDtoHAsync_v2_ptsz, API_DTOH)
    COPY_2D(cuMemcpy2D_v2)
    COPY_2D(cuMemcpy2D_v2_ptds)
    COPY_2D(cuMemcpy2DUnaligned_v2)
    COPY_2D(cuMemcpy2DUnaligned_v2_ptds)
    COPY_2D(cuMemcpy2DAsync_v2)
    COPY_2D(cuMemcpy2DAsync_v2_ptsz)
    /* Unified addressing: the direction is not in the arguments. */
    SIZED_COPY(cuMemcpy, API_ANY)
    SIZED_COPY(cuMemcpy_ptds, API_ANY)
    SIZED_COPY(cuMemcpyAsync, API_ANY)
    SIZED_COPY(cuMemcpyAsync_ptsz, API_ANY)
    default:
      break;
  }
}

static void CUPTIAPI on_api_callback(void *userdata, CUpti_CallbackDomain domain,
                                     CUpti_CallbackId cbid, const void *callback_data) {
  (void)userdata;
  const CUpti_CallbackData *data = callback_data;
  if (data == NULL || data->callbackSite != CUPTI_API_ENTER) return;
  ApiTally *tally = &g_api[current_phase()];
  size_t slot = cbid < CBID_SLOTS ? cbid : CBID_SLOTS - 1;
  if (domain == CUPTI_CB_DOMAIN_DRIVER_API) {
    atomic_fetch_add_explicit(&tally->driver[slot], 1, memory_order_relaxed);
    if (data->functionParams != NULL) count_driver_copy(tally, cbid, data->functionParams);
  } else if (domain == CUPTI_CB_DOMAIN_RUNTIME_API) {
    atomic_fetch_add_explicit(&tally->runtime[slot], 1, memory_order_relaxed);
  }
}

/* ---- JSON summary --------------------------------------------------------------------- */

static const char *const COPY_KIND_NAMES[] = {"unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA",
                                              "AtoD",    "DtoA", "DtoD", "HtoH", "PtoP"};
static const char *const MEMORY_KIND_NAMES[] = {"unknown", "pageable",      "pinned",
                                                "device",  "array",         "managed",
                                                "device_static", "managed_static"};
static const char *const UNIFIED_COUNTER_NAMES[] = {
    "unknown",  "bytes_HtoD", "bytes_DtoH",     "cpu_page_faults", "gpu_page_faults",
    "thrashing", "throttling", "remote_map",    "bytes_DtoD"};

#define NAME_OR_NUMBER(table, index, buffer)                                               \
  ((index) < sizeof(table) / sizeof((table)[0])                                            \
       ? (table)[index]                                                                    \
       : (snprintf((buffer), sizeof(buffer), "kind%zu%s", (size_t)(index),                \
                   (index) == KIND_SLOTS - 1 ? "+" : ""),                                 \
          (buffer)))

static void write_string(FILE *out, const char *text) {
  fputc('"', out);
  for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
    if (*c == '"' || *c == '\\') {
      fprintf(out, "\\%c", *c);
    } else if (*c < 0x20) {
      fprintf(out, "\\u%04x", *c);
    } else {
      fputc(*c, out);
    }
  }
  fputc('"', out);
}

/* Kernel names are C++-mangled; the demangler is used when the process already has one. */
static char *demangle(const char *name) {
  typedef char *(*Demangler)(const char *, char *, size_t *, int *);
  static Demangler demangler;
  static int looked_up;
  if (!looked_up) {
    looked_up = 1;
    *(void **)&demangler = dlsym(RTLD_DEFAULT, "__cxa_demangle");
  }
  if (demangler == NULL || strncmp(name, "_Z", 2) != 0) return NULL;
  int status = 0;
  char *plain = demangler(name, NULL, NULL, &status);
  if (status != 0) {
    free(plain);
    return NULL;
  }
  return plain;
}

static int compare_kernel_counts(const void *a, const void *b, void *phase_arg) {
  int phase = *(const int *)phase_arg;
  const KernelName *ka = *(const KernelName *const *)a, *kb = *(const KernelName *const *)b;
  if (ka->count[phase] != kb->count[phase]) return ka->count[phase] < kb->count[phase] ? 1 : -1;
  return strcmp(ka->name, kb->name);
}

static void write_kernel_names(FILE *out, int phase) {
  KernelName **sorted = calloc(g_kernel_name_count + 1, sizeof *sorted);
  size_t n = 0;
  if (sorted != NULL) {
    for (size_t i = 0; i < NAME_SLOTS; i++) {
      if (g_kernel_names[i].name != NULL && g_kernel_names[i].count[phase] > 0) {
        sorted[n++] = &g_kernel_names[i];
      }
    }
    qsort_r(sorted, n, sizeof *sorted, compare_kernel_counts, &phase);
  }
  fputs("[", out);
  for (size_t i = 0; i < n; i++) {
    char *plain = demangle(sorted[i]->name);
    fputs(i > 0 ? ",\n        {\"name\": " : "\n        {\"name\": ", out);
    write_string(out, plain != NULL ? plain : sorted[i]->name);
    fprintf(out, ", \"count\": %llu, \"ns\": %llu}", (unsigned long long)sorted[i]->count[phase],
            (unsigned long long)sorted[i]->ns[phase]);
    free(plain);
  }
  if (g_kernel_names_overflow[phase] > 0) {
    fprintf(out, "%s{\"name\": \"<other>\", \"count\": %llu}", n > 0 ? ",\n        " : "\n        ",
            (unsigned long long)g_kernel_names_overflow[phase]);
  }
  fputs("]", out);
  free(sorted);
}

static void write_streams(FILE *out, int phase) {
  fputs("[", out);
  int first = 1;
  for (size_t i = 0; i < STREAM_SLOTS; i++) {
    const StreamTime *t = &g_streams[i];
    if (!t->used || t->count[phase] == 0) continue;
    fprintf(out, "%s{\"context\": %u, \"stream\": %u, \"kernels\": %llu, \"ns\": %llu}",
            first ? "\n        " : ",\n        ", t->context, t->stream,
            (unsigned long long)t->count[phase], (unsigned long long)t->ns[phase]);
    first = 0;
  }
  if (g_streams_overflow[phase] > 0) {
    fprintf(out, "%s{\"stream\": \"<other>\", \"kernels\": %llu}", first ? "\n        " : ",\n        ",
            (unsigned long long)g_streams_overflow[phase]);
  }
  fputs("]", out);
}

typedef struct {
  uint64_t at;
  int delta;
} Edge;

static int compare_edges(const void *a, const void *b) {
  const Edge *ea = a, *eb = b;
  if (ea->at != eb->at) return ea->at < eb->at ? -1 : 1;
  return ea->delta - eb->delta; /* ends before starts at the same instant */
}

/* Busy (>= 1 kernel running) and overlap (>= 2) time over the steady phase's intervals. */
static void write_kernel_busy(FILE *out) {
  uint64_t busy = 0, overlap = 0, first_start = 0, last_end = 0;
  Edge *edges = g_interval_count ? malloc(2 * g_interval_count * sizeof *edges) : NULL;
  if (edges != NULL) {
    for (size_t i = 0; i < g_interval_count; i++) {
      edges[2 * i].at = g_intervals[i].start;
      edges[2 * i].delta = 1;
      edges[2 * i + 1].at = g_intervals[i].end;
      edges[2 * i + 1].delta = -1;
    }
    qsort(edges, 2 * g_interval_count, sizeof *edges, compare_edges);
    first_start = edges[0].at;
    last_end = edges[2 * g_interval_count - 1].at;
    int depth = 0;
    uint64_t previous = edges[0].at;
    for (size_t i = 0; i < 2 * g_interval_count; i++) {
      uint64_t span = edges[i].at - previous;
      if (depth >= 1) busy += span;
      if (depth >= 2) overlap += span;
      depth += edges[i].delta;
      previous = edges[i].at;
    }
    free(edges);
  }
  fprintf(out,
          "{\"intervals\": %llu, \"intervals_dropped\": %llu, \"span_ns\": %llu, "
          "\"busy_ns\": %llu, \"overlap_ns\": %llu}",
          (unsigned long long)g_interval_count, (unsigned long long)g_intervals_dropped,
          (unsigned long long)(last_end - first_start), (unsigned long long)busy,
          (unsigned long long)overlap);
}

static void write_api_counts(FILE *out, CUpti_CallbackDomain domain,
                             const _Atomic uint64_t *counts) {
  fputs("{", out);
  int first = 1;
  for (size_t cbid = 0; cbid < CBID_SLOTS; cbid++) {
    uint64_t count = atomic_load_explicit(&counts[cbid], memory_order_relaxed);
    if (count == 0) continue;
    const char *name = NULL;
    char fallback[32];
    if (cbid == CBID_SLOTS - 1) {
      name = "cbid_overflow";
    } else if (p_cuptiGetCallbackName == NULL ||
               p_cuptiGetCallbackName(domain, (uint32_t)cbid, &name) != CUPTI_SUCCESS ||
               name == NULL) {
      snprintf(fallback, sizeof fallback, "cbid_%zu", cbid);
      name = fallback;
    }
    fputs(first ? "\n        " : ",\n        ", out);
    write_string(out, name);
    fprintf(out, ": %llu", (unsigned long long)count);
    first = 0;
  }
  fputs("}", out);
}

static void write_phase(FILE *out, int phase) {
  const ActivityTally *activity = &g_activity[phase];
  const ApiTally *api = &g_api[phase];
  char buf_a[16], buf_b[16], buf_c[16];
  int first;

  fputs("{\n      \"memcpy\": [", out);
  first = 1;
  for (size_t c = 0; c < KIND_SLOTS; c++) {
    for (size_t s = 0; s < KIND_SLOTS; s++) {
      for (size_t d = 0; d < KIND_SLOTS; d++) {
        const CopyTally *t = &activity->memcpy[c][s][d];
        if (t->count == 0) continue;
        fprintf(out,
                "%s{\"copy\": \"%s\", \"src\": \"%s\", \"dst\": \"%s\", \"count\": %llu, "
                "\"async\": %llu, \"bytes\": %llu}",
                first ? "\n        " : ",\n        ", NAME_OR_NUMBER(COPY_KIND_NAMES, c, buf_a),
                NAME_OR_NUMBER(MEMORY_KIND_NAMES, s, buf_b),
                NAME_OR_NUMBER(MEMORY_KIND_NAMES, d, buf_c), (unsigned long long)t->count,
                (unsigned long long)t->async_count, (unsigned long long)t->bytes);
        first = 0;
      }
    }
  }
  fputs("],\n      \"memset\": [", out);
  first = 1;
  for (size_t m = 0; m < KIND_SLOTS; m++) {
    const ByteTally *t = &activity->memset[m];
    if (t->count == 0) continue;
    fprintf(out, "%s{\"mem\": \"%s\", \"count\": %llu, \"bytes\": %llu}",
            first ? "\n        " : ",\n        ", NAME_OR_NUMBER(MEMORY_KIND_NAMES, m, buf_a),
            (unsigned long long)t->count, (unsigned long long)t->bytes);
    first = 0;
  }
  fputs("],\n      \"memory_ops\": [", out);
  first = 1;
  for (size_t op = 0; op < MEMORY_OP_COUNT; op++) {
    for (size_t m = 0; m < KIND_SLOTS; m++) {
      const ByteTally *t = &activity->memory_ops[op][m];
      if (t->count == 0) continue;
      fprintf(out, "%s{\"op\": \"%s\", \"mem\": \"%s\", \"count\": %llu, \"bytes\": %llu}",
              first ? "\n        " : ",\n        ", MEMORY_OP_NAMES[op],
              NAME_OR_NUMBER(MEMORY_KIND_NAMES, m, buf_a), (unsigned long long)t->count,
              (unsigned long long)t->bytes);
      first = 0;
    }
  }
  fputs("],\n      \"unified_memory\": {", out);
  fprintf(out, "\"records\": %llu", (unsigned long long)activity->unified_records);
  for (size_t k = 0; k < KIND_SLOTS; k++) {
    if (activity->unified[k] == 0) continue;
    fprintf(out, ", \"%s\": %llu", NAME_OR_NUMBER(UNIFIED_COUNTER_NAMES, k, buf_a),
            (unsigned long long)activity->unified[k]);
  }
  fprintf(out,
          "},\n      \"kernels\": %llu,\n      \"kernel_ns\": %llu,\n      \"other_records\": %llu,\n",
          (unsigned long long)activity->kernels, (unsigned long long)activity->kernel_ns,
          (unsigned long long)activity->other_records);
  fputs("      \"kernel_streams\": ", out);
  write_streams(out, phase);
  if (phase == PHASE_STEADY) {
    fputs(",\n      \"kernel_busy\": ", out);
    write_kernel_busy(out);
  }
  fputs(",\n", out);
  fputs("      \"kernel_names\": ", out);
  write_kernel_names(out, phase);
  fputs(",\n      \"api_memcpy\": {", out);
  for (size_t c = 0; c < API_COPY_COUNT; c++) {
    fprintf(out, "%s\"%s\": {\"calls\": %llu, \"bytes\": %llu}", c > 0 ? ", " : "",
            API_COPY_NAMES[c],
            (unsigned long long)atomic_load_explicit(&api->copy_calls[c], memory_order_relaxed),
            (unsigned long long)atomic_load_explicit(&api->copy_bytes[c], memory_order_relaxed));
  }
  fputs("},\n      \"driver_api\": ", out);
  write_api_counts(out, CUPTI_CB_DOMAIN_DRIVER_API, api->driver);
  fputs(",\n      \"runtime_api\": ", out);
  write_api_counts(out, CUPTI_CB_DOMAIN_RUNTIME_API, api->runtime);
  fputs("\n    }", out);
}

/* argv from /proc/self/cmdline: argv[0] alone, and all of it joined by spaces. */
static void read_cmdline(char *argv0, size_t argv0_size, char *joined, size_t joined_size) {
  argv0[0] = joined[0] = '\0';
  FILE *file = fopen("/proc/self/cmdline", "rb");
  if (file == NULL) return;
  size_t n = fread(joined, 1, joined_size - 1, file);
  fclose(file);
  joined[n] = '\0';
  snprintf(argv0, argv0_size, "%s", joined);
  while (n > 0 && joined[n - 1] == '\0') n--;
  for (size_t i = 0; i < n; i++) {
    if (joined[i] == '\0') joined[i] = ' ';
  }
}

/* TRTV_CUPTI_OUT with each "%p" replaced by the pid. */
static void output_path(char *path, size_t size) {
  const char *pattern = getenv("TRTV_CUPTI_OUT");
  if (pattern == NULL || *pattern == '\0') pattern = "/tmp/cupti-%p.json";
  size_t used = 0;
  for (const char *c = pattern; *c != '\0' && used + 1 < size; c++) {
    if (c[0] == '%' && c[1] == 'p') {
      int written = snprintf(path + used, size - used, "%d", (int)g_pid);
      used += written > 0 ? (size_t)written : 0;
      c++;
    } else {
      path[used++] = *c;
    }
  }
  path[used < size ? used : size - 1] = '\0';
}

static void write_summary(void) {
  char path[1024], tmp_path[1100], argv0[512], cmdline[4096];
  output_path(path, sizeof path);
  snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
  read_cmdline(argv0, sizeof argv0, cmdline, sizeof cmdline);
  FILE *out = fopen(tmp_path, "w");
  if (out == NULL) {
    fprintf(stderr, "trtv-cupti: fopen(%s) failed: cannot write the summary\n", tmp_path);
    return;
  }
  double wall_s = (double)(monotonic_ns() - g_init_ns) / 1e9;
  double steady_s = wall_s > g_start_after_s ? wall_s - g_start_after_s : 0.0;

  pthread_mutex_lock(&g_activity_mutex);
  fputs("{\n  \"tool\": \"trtv-cupti\",\n  \"format\": 1,\n", out);
  fprintf(out, "  \"pid\": %d,\n  \"argv0\": ", (int)g_pid);
  write_string(out, argv0);
  fputs(",\n  \"cmdline\": ", out);
  write_string(out, cmdline);
  fputs(",\n  \"cupti_lib\": ", out);
  write_string(out, g_cupti_path);
  fprintf(out,
          ",\n  \"cupti_version\": %u,\n  \"header_version\": %d,\n  \"wall_s\": %.3f,\n"
          "  \"start_after_s\": %.3f,\n  \"steady_s\": %.3f,\n",
          g_cupti_version, CUPTI_API_VERSION, wall_s, g_start_after_s, steady_s);
  fprintf(out,
          "  \"activity_on\": %s,\n  \"callbacks_on\": %s,\n  \"records\": %llu,\n"
          "  \"buffers_completed\": %llu,\n  \"dropped_records\": %llu,\n",
          g_activity_on ? "true" : "false", g_callbacks_on ? "true" : "false",
          (unsigned long long)g_records, (unsigned long long)g_buffers_completed,
          (unsigned long long)g_dropped_records);
  fputs("  \"activity_kinds\": {", out);
  for (size_t k = 0; k < KIND_COUNT; k++) {
    fprintf(out, "%s\"%s\": ", k > 0 ? ", " : "", g_kinds[k].name);
    write_string(out, g_kinds[k].status);
  }
  fputs("},\n  \"errors\": [", out);
  pthread_mutex_lock(&g_error_mutex);
  for (int e = 0; e < g_error_count; e++) {
    fputs(e > 0 ? ", " : "", out);
    write_string(out, g_errors[e]);
  }
  pthread_mutex_unlock(&g_error_mutex);
  fputs("],\n  \"phases\": {", out);
  for (int phase = 0; phase < PHASE_COUNT; phase++) {
    fprintf(out, "%s\n    \"%s\": ", phase > 0 ? "," : "", PHASE_NAMES[phase]);
    write_phase(out, phase);
  }
  fputs("\n  }\n}\n", out);
  pthread_mutex_unlock(&g_activity_mutex);

  int failed = ferror(out);
  if (fclose(out) != 0 || failed || rename(tmp_path, path) != 0) {
    fprintf(stderr, "trtv-cupti: writing %s failed\n", path);
    return;
  }
  fprintf(stderr, "trtv-cupti: wrote %s\n", path);
}

static void on_exit_flush_and_write(void) {
  /* A child forked after cuInit inherits the handler but not a working CUDA. */
  if (getpid() != g_pid) return;
  if (g_activity_on) {
    cupti_ok("cuptiActivityFlushAll(1)", p_cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
  }
  write_summary();
}

/* ---- initialisation ------------------------------------------------------------------- */

static int load_cupti(void) {
  const char *candidates[] = {getenv("TRTV_CUPTI_LIB"), "libcupti.so.13", "libcupti.so"};
  char tried[ERROR_LEN] = "";
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
    if (candidates[i] == NULL || *candidates[i] == '\0') continue;
    g_cupti_handle = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
    if (g_cupti_handle != NULL) {
      snprintf(g_cupti_path, sizeof g_cupti_path, "%s", candidates[i]);
      break;
    }
    const char *why = dlerror();
    size_t used = strlen(tried);
    snprintf(tried + used, sizeof tried - used, "%s%s", used > 0 ? "; " : "",
             why != NULL ? why : candidates[i]);
  }
  if (g_cupti_handle == NULL) {
    report("dlopen(libcupti) failed: %s", tried);
    return 0;
  }
  int complete = 1;
  for (size_t i = 0; i < sizeof CUPTI_SYMBOLS / sizeof CUPTI_SYMBOLS[0]; i++) {
    *CUPTI_SYMBOLS[i].slot = dlsym(g_cupti_handle, CUPTI_SYMBOLS[i].name);
    if (*CUPTI_SYMBOLS[i].slot == NULL && CUPTI_SYMBOLS[i].core) {
      report("dlsym(%s) failed: not in %s", CUPTI_SYMBOLS[i].name, g_cupti_path);
      complete = 0;
    }
  }
  return complete;
}

static void read_start_after(void) {
  const char *text = getenv("TRTV_CUPTI_START_AFTER_S");
  g_start_after_s = 0.0;
  if (text != NULL && *text != '\0') {
    char *end = NULL;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= 0.0) || value > 1e6) {
      report("TRTV_CUPTI_START_AFTER_S=%s ignored: not a number of seconds", text);
    } else {
      g_start_after_s = value;
    }
  }
  g_steady_from_ns = g_init_ns + (uint64_t)(g_start_after_s * 1e9);
  atomic_store(&g_steady, g_start_after_s <= 0.0);
  const char *max = getenv("TRTV_CUPTI_MAX_INTERVALS");
  if (max != NULL && *max != '\0') {
    char *end = NULL;
    unsigned long long value = strtoull(max, &end, 10);
    if (end == max || *end != '\0' || value > 1000000000ull) {
      report("TRTV_CUPTI_MAX_INTERVALS=%s ignored: not a count", max);
    } else {
      g_interval_max = (size_t)value;
    }
  }
}

/* Must run before the first context exists, which InitializeInjection guarantees. */
static int configure_unified_memory(void) {
  if (p_cuptiActivityConfigureUnifiedMemoryCounter == NULL) {
    report("cuptiActivityConfigureUnifiedMemoryCounter failed: not in %s", g_cupti_path);
    return 0;
  }
  const CUpti_ActivityUnifiedMemoryCounterKind kinds[] = {
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_BYTES_TRANSFER_HTOD,
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_BYTES_TRANSFER_DTOH,
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_CPU_PAGE_FAULT_COUNT,
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_GPU_PAGE_FAULT,
  };
  enum { COUNTERS = sizeof kinds / sizeof kinds[0] };
  CUpti_ActivityUnifiedMemoryCounterConfig config[COUNTERS];
  for (size_t i = 0; i < COUNTERS; i++) {
    config[i].scope = CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_SCOPE_PROCESS_SINGLE_DEVICE;
    config[i].kind = kinds[i];
    config[i].deviceId = 0;
    config[i].enable = 1;
  }
  return cupti_ok("cuptiActivityConfigureUnifiedMemoryCounter",
                  p_cuptiActivityConfigureUnifiedMemoryCounter(config, COUNTERS));
}

static void enable_activity(void) {
  if (!cupti_ok("cuptiActivityRegisterCallbacks",
                p_cuptiActivityRegisterCallbacks(on_buffer_requested, on_buffer_completed))) {
    return;
  }
  for (size_t k = 0; k < KIND_COUNT; k++) {
    ActivityKindStatus *status = &g_kinds[k];
    if (status->kind == CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER) {
      const char *wanted = getenv("TRTV_CUPTI_UM");
      if (wanted != NULL && strcmp(wanted, "0") == 0) {
        snprintf(status->status, ERROR_LEN, "skipped: TRTV_CUPTI_UM=0");
        continue;
      }
      if (!configure_unified_memory()) {
        snprintf(status->status, ERROR_LEN, "failed: counters not configured (see errors)");
        continue;
      }
    }
    char call[96];
    snprintf(call, sizeof call, "cuptiActivityEnable(%s)", status->name);
    CUptiResult result = p_cuptiActivityEnable(status->kind);
    if (cupti_ok(call, result)) {
      snprintf(status->status, ERROR_LEN, "enabled");
      g_activity_on = 1;
    } else {
      snprintf(status->status, ERROR_LEN, "failed: %s", result_text(result));
    }
  }
}

static void enable_callbacks(void) {
  if (!cupti_ok("cuptiSubscribe",
                p_cuptiSubscribe(&g_subscriber, (CUpti_CallbackFunc)on_api_callback, NULL))) {
    return;
  }
  if (cupti_ok("cuptiEnableDomain(DRIVER_API)",
               p_cuptiEnableDomain(1, g_subscriber, CUPTI_CB_DOMAIN_DRIVER_API))) {
    g_callbacks_on = 1;
  }
  if (cupti_ok("cuptiEnableDomain(RUNTIME_API)",
               p_cuptiEnableDomain(1, g_subscriber, CUPTI_CB_DOMAIN_RUNTIME_API))) {
    g_callbacks_on = 1;
  }
}

/* Called by the CUDA driver. Returns 1 on success, 0 on failure, as NVIDIA's CUPTI
 * injection samples do. */
EXPORT int InitializeInjection(void) {
  static atomic_int result;
  if (atomic_exchange(&g_init_started, 1)) return atomic_load(&result);
  g_pid = getpid();
  g_init_ns = monotonic_ns();
  read_start_after();

  int loaded = load_cupti();
  /* Registered after dlopen so that it runs before libcupti's own exit handlers. */
  if (atexit(on_exit_flush_and_write) != 0) {
    fprintf(stderr, "trtv-cupti: atexit failed: no summary will be written\n");
  }
  if (!loaded) return 0;

  if (p_cuptiGetVersion != NULL && p_cuptiGetVersion(&g_cupti_version) == CUPTI_SUCCESS &&
      g_cupti_version / 10000 != CUPTI_API_VERSION / 10000) {
    report("%s reports CUPTI API version %u; built for %d: counts may be wrong", g_cupti_path,
           g_cupti_version, CUPTI_API_VERSION);
  }
  if (g_start_after_s > 0.0) {
    uint64_t now = 0;
    if (cupti_ok("cuptiGetTimestamp", p_cuptiGetTimestamp(&now))) {
      g_steady_from_cupti_ns = now + (uint64_t)(g_start_after_s * 1e9);
    }
  }
  enable_activity();
  enable_callbacks();
  atomic_store(&result, g_activity_on || g_callbacks_on ? 1 : 0);
  return atomic_load(&result);
}
