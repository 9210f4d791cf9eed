/*
 * A fake libnvidia-ml.so.1 for running the daemon's real NVML code path
 * (nvml-wrapper and all) on machines without a GPU.
 *
 * Each test compiles its own copy into its own directory, so copies loaded
 * side by side in one test process have separate state and need no
 * environment variables. The library finds that directory from its own path
 * (dladdr) and reads:
 *
 *   gpus.conf  one GPU per line:  uuid,name,total_mib,used_mib[,reserved_mib[,flags]]
 *              flags (space separated): lost  (memory/PCI queries fail GPU_IS_LOST)
 *                                       nopci (PCI query fails NOT_SUPPORTED)
 *                                       noecc (no ECC event types supported)
 *                                       noevents (no event types supported)
 *              Re-read on every call, so a test may rewrite it (atomically).
 *              Missing file: nvmlInit fails DRIVER_NOT_LOADED.
 *   events     appended lines, delivered by nvmlEventSetWait_v2 to the sets
 *              registered for them:  "xid <index> <code>", "dbe <index>",
 *              "gpulost" (the wait itself fails GPU_IS_LOST once).
 *              A set sees only lines appended after it was created, as a
 *              real driver delivers only events raised after registration.
 *
 * Struct layouts match nvml-wrapper-sys 0.10's bindings (nvml.h); the static
 * asserts below pin their sizes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_MEMORY 20
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define NVML_ERROR_UNKNOWN 999

#define EV_SINGLE_BIT_ECC 1ULL
#define EV_DOUBLE_BIT_ECC 2ULL
#define EV_PSTATE 4ULL
#define EV_XID 8ULL
#define EV_CLOCK 16ULL

#define MAX_GPUS 16
#define MIB (1024ULL * 1024ULL)

typedef struct nvmlDevice_st {
    char uuid[96];
    char name[96];
    unsigned long long total_mib, used_mib, reserved_mib;
    int lost, nopci;
    unsigned long long supported_events;
} *nvmlDevice_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct nvmlEventSet_st {
    long offset; /* bytes of the events file already consumed */
    unsigned long long registered[MAX_GPUS];
} *nvmlEventSet_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

_Static_assert(sizeof(nvmlMemory_v2_t) == 40, "nvmlMemory_v2_t layout");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t layout");
_Static_assert(sizeof(nvmlEventData_t) == 32, "nvmlEventData_t layout");

static struct nvmlDevice_st gpus[MAX_GPUS];
static unsigned int gpu_count;
/* Guards gpus/gpu_count: the watcher thread and snapshots call concurrently. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

nvmlReturn_t nvmlInit_v2(void);

/* The directory this copy of the library was loaded from, plus a file name. */
static void path_of(const char *file, char *out, size_t len) {
    Dl_info info;
    const char *self = "";
    if (dladdr((void *)&nvmlInit_v2, &info) && info.dli_fname) self = info.dli_fname;
    const char *slash = strrchr(self, '/');
    int dir_len = slash ? (int)(slash - self) : 1;
    snprintf(out, len, "%.*s/%s", dir_len, slash ? self : ".", file);
}

/* Reads gpus.conf into gpus[]; the caller holds `lock`. */
static nvmlReturn_t load_locked(void) {
    char path[4096], line[1024];
    path_of("gpus.conf", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return NVML_ERROR_DRIVER_NOT_LOADED;
    unsigned int n = 0;
    while (n < MAX_GPUS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == 0 || line[0] == '#') continue;
        struct nvmlDevice_st d;
        memset(&d, 0, sizeof d);
        char *save = NULL;
        char *uuid = strtok_r(line, ",", &save);
        char *name = strtok_r(NULL, ",", &save);
        char *total = strtok_r(NULL, ",", &save);
        char *used = strtok_r(NULL, ",", &save);
        char *reserved = strtok_r(NULL, ",", &save);
        char *flags = strtok_r(NULL, ",", &save);
        if (!uuid || !name || !total || !used) continue;
        snprintf(d.uuid, sizeof d.uuid, "%s", uuid);
        snprintf(d.name, sizeof d.name, "%s", name);
        d.total_mib = strtoull(total, NULL, 10);
        d.used_mib = strtoull(used, NULL, 10);
        d.reserved_mib = reserved ? strtoull(reserved, NULL, 10) : 0;
        d.supported_events = EV_SINGLE_BIT_ECC | EV_DOUBLE_BIT_ECC | EV_PSTATE | EV_XID | EV_CLOCK;
        if (flags) {
            char *fsave = NULL;
            for (char *w = strtok_r(flags, " ", &fsave); w; w = strtok_r(NULL, " ", &fsave)) {
                if (!strcmp(w, "lost")) d.lost = 1;
                else if (!strcmp(w, "nopci")) d.nopci = 1;
                else if (!strcmp(w, "noecc")) d.supported_events &= ~(EV_SINGLE_BIT_ECC | EV_DOUBLE_BIT_ECC);
                else if (!strcmp(w, "noevents")) d.supported_events = 0;
            }
        }
        gpus[n++] = d;
    }
    fclose(f);
    gpu_count = n;
    return NVML_SUCCESS;
}

/* Refreshes from gpus.conf and copies out device `d`; -1 if not a device. */
static int snapshot_device(nvmlDevice_t d, struct nvmlDevice_st *out) {
    int index = -1;
    pthread_mutex_lock(&lock);
    load_locked();
    uintptr_t p = (uintptr_t)d, base = (uintptr_t)gpus;
    if (p >= base && p < base + gpu_count * sizeof gpus[0] && (p - base) % sizeof gpus[0] == 0) {
        index = (int)((p - base) / sizeof gpus[0]);
        *out = gpus[index];
    }
    pthread_mutex_unlock(&lock);
    return index;
}

static nvmlReturn_t copy_string(const char *s, char *buf, unsigned int len) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(buf, s);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = load_locked();
    pthread_mutex_unlock(&lock);
    return r;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    return copy_string("550.54.15", version, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    load_locked();
    *count = gpu_count;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!device) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    load_locked();
    nvmlReturn_t r = NVML_ERROR_INVALID_ARGUMENT;
    if (index < gpu_count) {
        *device = &gpus[index];
        r = NVML_SUCCESS;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    struct nvmlDevice_st d;
    int i = snapshot_device(device, &d);
    if (i < 0 || !index) return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned int)i;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    struct nvmlDevice_st d;
    if (snapshot_device(device, &d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    return copy_string(d.uuid, uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    struct nvmlDevice_st d;
    if (snapshot_device(device, &d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    return copy_string(d.name, name, length);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    struct nvmlDevice_st d;
    if (snapshot_device(device, &d) < 0 || !memory) return NVML_ERROR_INVALID_ARGUMENT;
    /* NVML_STRUCT_VERSION(Memory, 2): a caller with another layout is refused. */
    if (memory->version != (unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (d.lost) return NVML_ERROR_GPU_IS_LOST;
    memory->total = d.total_mib * MIB;
    memory->used = d.used_mib * MIB;
    memory->reserved = d.reserved_mib * MIB;
    memory->free = memory->total - memory->used - memory->reserved;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    struct nvmlDevice_st d;
    int i = snapshot_device(device, &d);
    if (i < 0 || !pci) return NVML_ERROR_INVALID_ARGUMENT;
    if (d.lost) return NVML_ERROR_GPU_IS_LOST;
    if (d.nopci) return NVML_ERROR_NOT_SUPPORTED;
    memset(pci, 0, sizeof *pci);
    pci->bus = (unsigned int)i + 0x3b;
    pci->pciDeviceId = 0x27b810de;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", pci->bus);
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *types) {
    struct nvmlDevice_st d;
    if (snapshot_device(device, &d) < 0 || !types) return NVML_ERROR_INVALID_ARGUMENT;
    *types = d.supported_events;
    return NVML_SUCCESS;
}

static long events_size(void) {
    char path[4096];
    struct stat st;
    path_of("events", path, sizeof path);
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    *set = calloc(1, sizeof **set);
    if (!*set) return NVML_ERROR_MEMORY;
    (*set)->offset = events_size();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    free(set);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types, nvmlEventSet_t set) {
    struct nvmlDevice_st d;
    int i = snapshot_device(device, &d);
    if (i < 0 || !set) return NVML_ERROR_INVALID_ARGUMENT;
    /* Like the driver: asking for any unsupported type fails the whole call. */
    if (types & ~d.supported_events) return NVML_ERROR_NOT_SUPPORTED;
    set->registered[i] |= types;
    return NVML_SUCCESS;
}

/* Consumes complete lines after set->offset until one is for this set:
 * 1 = event filled in, -1 = "gpulost", 0 = nothing (yet). */
static int next_event(nvmlEventSet_t set, nvmlEventData_t *data) {
    char path[4096], line[256];
    path_of("events", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    if (fseek(f, set->offset, SEEK_SET) != 0) goto out;
    while (!found && fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') break; /* still being written */
        set->offset += (long)len;
        unsigned int index;
        unsigned long long code;
        unsigned long long type = 0;
        if (sscanf(line, "xid %u %llu", &index, &code) == 2) type = EV_XID;
        else if (sscanf(line, "dbe %u", &index) == 1) type = EV_DOUBLE_BIT_ECC, code = 0;
        else if (strncmp(line, "gpulost", 7) == 0) { found = -1; break; }
        if (!type || index >= MAX_GPUS || !(set->registered[index] & type)) continue;
        memset(data, 0, sizeof *data);
        data->device = &gpus[index];
        data->eventType = type;
        data->eventData = code;
        found = 1;
    }
out:
    fclose(f);
    return found;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec now, deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeoutms / 1000;
    deadline.tv_nsec += (long)(timeoutms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    for (;;) {
        int found = next_event(set, data);
        if (found == 1) return NVML_SUCCESS;
        if (found == -1) return NVML_ERROR_GPU_IS_LOST;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
            return NVML_ERROR_TIMEOUT;
        /* The fake driver polls its file; 5 ms keeps tests quick and idle. */
        struct timespec step = {0, 5000000L};
        nanosleep(&step, NULL);
    }
}
