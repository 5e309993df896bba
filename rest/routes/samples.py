"""The routes of audio samples: upload, list, read, delete, and the local files."""

from __future__ import annotations

from rest.openapi import Route
from rest.samples import LOCAL_FILE_PATH, delete_sample, get_sample, list_samples, serve_file, upload
from rest.schemas import SampleList, SampleListQuery, SamplePublic, SampleUploadForm, Success


def routes() -> list[Route]:
    item = "/api/samples/{id}"
    return [
        Route(
            "POST",
            "/api/samples/upload",
            upload,
            "Upload a WAV or MP3 sample (multipart: file, optional name)",
            "samples",
            form=SampleUploadForm,
            response=SamplePublic,
            status=201,
            errors=(400, 403, 413, 415, 422, 503),
        ),
        Route(
            "GET",
            "/api/samples",
            list_samples,
            "Your samples, their total size and your quota",
            "samples",
            query=SampleListQuery,
            response=SampleList,
            errors=(400,),
        ),
        Route(
            "GET",
            item,
            get_sample,
            "One of your samples",
            "samples",
            response=SamplePublic,
            errors=(400, 404),
        ),
        Route(
            "DELETE",
            item,
            delete_sample,
            "Delete your sample (loops using it then report it missing)",
            "samples",
            response=Success,
            errors=(400, 404),
        ),
        *(
            Route(
                method,
                LOCAL_FILE_PATH,
                serve_file,
                "A sample file (local storage only; supports Range and ETag)",
                "samples",
                auth="none",
                errors=(404,),
            )
            for method in ("GET", "HEAD")
        ),
    ]
