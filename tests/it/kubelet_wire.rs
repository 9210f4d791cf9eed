//! Guards the kubelet wire contract of our own protos: field numbers (as
//! bytes), service names and the literal gRPC paths kubelet uses. A change
//! here means kubelet can no longer talk to the daemon.

use crate::kubelet_support::{DEADLINE, FakeKubelet, FakePodResources, pod, raw_unary};
use prost::Message;
use tonic::Code;
use vision_node_daemon::kubelet;
use vision_node_daemon::proto::k8s::deviceplugin::v1beta1 as dp;
use vision_node_daemon::proto::k8s::podresources::v1 as pr;
use vision_node_daemon::uds;

fn bytes(m: &impl Message) -> Vec<u8> {
    m.encode_to_vec()
}

#[test]
fn allocate_request_device_ids_are_field_1() {
    let req = dp::ContainerAllocateRequest {
        devices_ids: vec!["a".into()],
    };
    assert_eq!(bytes(&req), [0x0a, 0x01, b'a']);
    let pre = dp::PreStartContainerRequest {
        devices_ids: vec!["a".into()],
    };
    assert_eq!(bytes(&pre), [0x0a, 0x01, b'a']);
}

#[test]
fn device_fields_are_id_1_health_2_topology_3() {
    let d = dp::Device {
        id: "g".into(),
        health: kubelet::HEALTHY.into(),
        topology: Some(dp::TopologyInfo {
            nodes: vec![dp::NumaNode { id: 1 }],
        }),
    };
    let mut want = vec![0x0a, 0x01, b'g', 0x12, 0x07];
    want.extend_from_slice(b"Healthy");
    // topology (3) { nodes (1) { ID (1) = 1 } }
    want.extend_from_slice(&[0x1a, 0x04, 0x0a, 0x02, 0x08, 0x01]);
    assert_eq!(bytes(&d), want);
}

#[test]
fn register_request_fields_are_version_1_endpoint_2_resource_name_3_options_4() {
    let req = dp::RegisterRequest {
        version: "v".into(),
        endpoint: "e".into(),
        resource_name: "r".into(),
        options: Some(dp::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }),
    };
    assert_eq!(
        bytes(&req),
        [
            0x0a, 0x01, b'v', 0x12, 0x01, b'e', 0x1a, 0x01, b'r', 0x22, 0x02, 0x10, 0x01
        ]
    );
}

#[test]
fn container_allocate_response_fields_are_envs_1_to_cdi_devices_5() {
    let mut resp = dp::ContainerAllocateResponse {
        cdi_devices: vec![dp::CdiDevice { name: "x".into() }],
        ..Default::default()
    };
    assert_eq!(bytes(&resp), [0x2a, 0x03, 0x0a, 0x01, b'x']);

    resp.cdi_devices.clear();
    resp.envs.insert("k".into(), "v".into());
    // envs (1): a map entry { key (1), value (2) }
    assert_eq!(
        bytes(&resp),
        [0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']
    );

    resp.envs.clear();
    resp.annotations.insert("k".into(), "v".into());
    assert_eq!(
        bytes(&resp),
        [0x22, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']
    );

    resp.annotations.clear();
    resp.mounts.push(dp::Mount {
        container_path: "c".into(),
        host_path: "h".into(),
        read_only: true,
    });
    resp.devices.push(dp::DeviceSpec {
        container_path: "c".into(),
        host_path: "h".into(),
        permissions: "rw".into(),
    });
    assert_eq!(
        bytes(&resp),
        [
            0x12, 0x08, 0x0a, 0x01, b'c', 0x12, 0x01, b'h', 0x18, 0x01, // mounts (2)
            0x1a, 0x0a, 0x0a, 0x01, b'c', 0x12, 0x01, b'h', 0x1a, 0x02, b'r',
            b'w', // devices (3)
        ]
    );
}

#[test]
fn preferred_allocation_fields_keep_upstream_numbers() {
    let req = dp::ContainerPreferredAllocationRequest {
        available_device_i_ds: vec!["a".into()],
        must_include_device_i_ds: vec!["m".into()],
        allocation_size: 2,
    };
    assert_eq!(
        bytes(&req),
        [0x0a, 0x01, b'a', 0x12, 0x01, b'm', 0x18, 0x02]
    );
    let resp = dp::ContainerPreferredAllocationResponse {
        device_i_ds: vec!["a".into()],
    };
    assert_eq!(bytes(&resp), [0x0a, 0x01, b'a']);
}

#[test]
fn pod_resources_containers_are_field_3_and_device_ids_field_2() {
    let p = pr::PodResources {
        containers: vec![pr::ContainerResources {
            name: "c".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(bytes(&p), [0x1a, 0x03, 0x0a, 0x01, b'c']);

    let d = pr::ContainerDevices {
        resource_name: "r".into(),
        device_ids: vec!["d".into()],
        topology: None,
    };
    assert_eq!(bytes(&d), [0x0a, 0x01, b'r', 0x12, 0x01, b'd']);

    let dynamic = pr::DynamicResource {
        claim_name: "n".into(),
        ..Default::default()
    };
    assert_eq!(
        bytes(&dynamic),
        [0x12, 0x01, b'n'],
        "field 1 stays reserved"
    );

    let get = pr::GetPodResourcesRequest {
        pod_name: "p".into(),
        pod_namespace: "n".into(),
    };
    assert_eq!(bytes(&get), [0x0a, 0x01, b'p', 0x12, 0x01, b'n']);
}

#[test]
fn service_names_carry_the_kubelet_proto_packages() {
    assert_eq!(
        dp::registration_server::SERVICE_NAME,
        "v1beta1.Registration"
    );
    assert_eq!(
        dp::device_plugin_server::SERVICE_NAME,
        "v1beta1.DevicePlugin"
    );
    assert_eq!(
        pr::pod_resources_lister_server::SERVICE_NAME,
        "v1.PodResourcesLister"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn register_answers_on_its_literal_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let channel = uds::client::connect(kubelet.socket())
        .await
        .expect("kubelet.sock");
    // A wrong version is refused by the handler; an unrouted path would be
    // UNIMPLEMENTED instead.
    let err = raw_unary::<_, dp::Empty>(
        channel,
        "/v1beta1.Registration/Register",
        dp::RegisterRequest {
            version: "v0".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("wrong version");
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(err.message().contains("not supported"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_resources_answer_on_their_literal_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakePodResources::start(&dir.path().join("pod-resources/kubelet.sock")).await;
    fake.set_pods(vec![pod("p", "ns", "c", "vision.ai/slot", &["s0"])]);
    let channel = uds::client::connect(fake.path()).await.expect("socket");

    let list: pr::ListPodResourcesResponse = raw_unary(
        channel.clone(),
        "/v1.PodResourcesLister/List",
        pr::ListPodResourcesRequest {},
    )
    .await
    .expect("List");
    assert_eq!(list.pod_resources.len(), 1);

    let _: pr::AllocatableResourcesResponse = raw_unary(
        channel.clone(),
        "/v1.PodResourcesLister/GetAllocatableResources",
        pr::AllocatableResourcesRequest {},
    )
    .await
    .expect("GetAllocatableResources");

    let got: pr::GetPodResourcesResponse = raw_unary(
        channel,
        "/v1.PodResourcesLister/Get",
        pr::GetPodResourcesRequest {
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
        },
    )
    .await
    .expect("Get");
    assert_eq!(got.pod_resources.expect("pod").name, "p");
    assert_eq!(fake.wait_list_calls(1, DEADLINE).await, 1);
}
